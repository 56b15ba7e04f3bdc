"""A gcd-stack watched as a cluster's Prometheus would watch a gcd pod: the real Prometheus
scrapes the stack's two metrics endpoints with the labels a PodMonitor gives them, and a stand-in
for kube-state-metrics and cAdvisor; the dashboard's queries and the alerting rules, as shipped."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.ports import Ports
from gcd_stack.processes import default_ports
from gcd_testing.http_server import serving
from gcd_testing.prometheus import (
    RATE_INTERVAL,
    Container,
    ProcessHistory,
    Target,
    cluster_series,
    running_prometheus,
)

from clients import http_request
from deployment import Manifest, all_containers, find, pod_spec, render
from processes import REPO, envoy_pid, running_stack, server_pid

COMPONENT = REPO / "kustomize" / "components" / "monitoring"
RULES = COMPONENT / "gcd-service.rules.yaml"
DASHBOARD = COMPONENT / "gcd-service-dashboard.json"


def dashboard_queries(namespace: str) -> list[tuple[str, str, str]]:
    """(panel title, legend, PromQL) of every query of the dashboard, with its variables as Grafana
    would fill them in."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (
            panel["title"],
            target["legendFormat"],
            target["expr"].replace("$namespace", namespace).replace("$__rate_interval", RATE_INTERVAL),
        )
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


@dataclass(frozen=True)
class Watched:
    prometheus: str
    ports: Ports
    stack: subprocess.Popen[bytes]
    namespace: str


def drive(watched: Watched, seconds: float) -> None:
    """What an operator's dashboard shows: REST answers and errors, HEAD, gRPC direct and through
    Envoy. Failures are part of the picture, not of this function's business."""
    request = gcd_pb2.ComputeRequest(a=12, b=18)
    with (
        grpc.insecure_channel(f"{LOOPBACK}:{watched.ports.grpc}") as direct,
        grpc.insecure_channel(f"{LOOPBACK}:{watched.ports.envoy}") as through_envoy,
    ):
        stubs = [gcd_pb2_grpc.GCDServiceStub(channel) for channel in (direct, through_envoy)]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for path, method in (("/gcd/12/18", "GET"), ("/gcd/abc/18", "GET"), ("/gcd/12/18", "HEAD")):
                with contextlib.suppress(OSError):
                    http_request(watched.ports.envoy, path, method=method)
            for stub in stubs:
                with contextlib.suppress(grpc.RpcError):
                    stub.Compute(request, timeout=5)
            time.sleep(0.02)


@contextmanager
def watched_stack(workdir: Path) -> Iterator[Watched]:
    """A gcd-stack, scraped every second by a real Prometheus that also evaluates the rules: the
    pod's containers, ports and scrape paths are the pi-monitored overlay's, on the stack's ports."""
    monitored = render("pi-monitored")
    deployment: Manifest = find(monitored, "Deployment")
    namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    pod = f"{name}-local"
    init_containers = {each["name"] for each in pod_spec(monitored).get("initContainers", [])}
    # Which container declares each named port, and which of the stack's ports plays it.
    declared = {
        port["name"]: (each["name"], port["containerPort"])
        for each in all_containers(monitored)
        for port in each["ports"]
    }
    pod_ports = {getattr(default_ports(), field.name): field.name for field in dataclasses.fields(Ports)}
    with running_stack(workdir) as (ports, stack):
        processes = {
            "server": ProcessHistory(lambda: server_pid(stack)),
            "envoy": ProcessHistory(lambda: envoy_pid(stack)),
        }
        containers = [
            Container(each["name"], processes[each["name"]], each["name"] in init_containers, each["resources"])
            for each in all_containers(monitored)
        ]
        replicas = int(deployment["spec"]["replicas"])

        def stand_in() -> str:
            return cluster_series(namespace, name, pod, containers, replicas)

        with serving(stand_in, "text/plain; version=0.0.4") as cluster:
            targets = [Target("kube-state-metrics", cluster, "/metrics")]
            for endpoint in find(monitored, "PodMonitor")["spec"]["podMetricsEndpoints"]:
                owner, number = declared[endpoint["port"]]
                address = f"{LOOPBACK}:{getattr(ports, pod_ports[number])}"
                labels = {"namespace": namespace, "pod": pod, "container": owner}
                targets.append(Target("gcd", address, endpoint["path"], labels))
            with running_prometheus(targets, workdir, (RULES,)) as prometheus:
                yield Watched(prometheus, ports, stack, namespace)
