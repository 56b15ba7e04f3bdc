"""A gcd-stack watched as a cluster's Prometheus would watch a gcd pod: the real Prometheus
scrapes the stack's two metrics endpoints with the labels a PodMonitor gives them, and a stand-in
for kube-state-metrics and cAdvisor; the dashboard's queries and the alerting rules, as shipped."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.ports import Ports
from gcd_testing.http_server import serving
from gcd_testing.prometheus import (
    RATE_INTERVAL,
    Container,
    Target,
    cluster_series,
    running_prometheus,
)

from clients import http_request
from deployment import Manifest, container, find, render
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


class Process:
    """The process playing a container now, and how often it was replaced: a restart, to
    kube-state-metrics (the stack restarts a server that dies, with a new pid)."""

    def __init__(self, find: Callable[[], int]) -> None:
        self._find = find
        self._seen: set[int] = set()

    def __call__(self) -> int:
        pid = self._find()
        self._seen.add(pid)
        return pid

    def restarts(self) -> int:
        return max(len(self._seen) - 1, 0)


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
    """A gcd-stack, scraped every second by a real Prometheus that also evaluates the rules."""
    pi = render("pi")
    deployment: Manifest = find(pi, "Deployment")
    namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    pod = f"{name}-local"
    with running_stack(workdir) as (ports, stack):
        server, envoy = Process(lambda: server_pid(stack)), Process(lambda: envoy_pid(stack))
        containers = [
            Container("server", server, False, container(pi, "server")["resources"], server.restarts),
            Container("envoy", envoy, True, container(pi, "envoy")["resources"], envoy.restarts),
        ]
        replicas = int(deployment["spec"]["replicas"])

        def stand_in() -> str:
            return cluster_series(namespace, name, pod, containers, replicas)

        with serving(stand_in, "text/plain; version=0.0.4") as cluster:
            on_server = {"namespace": namespace, "pod": pod, "container": "server"}
            on_envoy = {**on_server, "container": "envoy"}
            targets = [
                Target("gcd", f"{LOOPBACK}:{ports.metrics}", "/metrics", on_server),
                Target("gcd", f"{LOOPBACK}:{ports.envoy_metrics}", "/stats/prometheus", on_envoy),
                Target("kube-state-metrics", cluster, "/metrics"),
            ]
            with running_prometheus(targets, workdir, (RULES,)) as prometheus:
                yield Watched(prometheus, ports, stack, namespace)
