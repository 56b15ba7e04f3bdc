"""A gcd-stack watched as a cluster's Prometheus would watch a gcd pod: the real Prometheus
scrapes the stack's two metrics endpoints with the labels a PodMonitor gives them, and a stand-in
for kube-state-metrics and cAdvisor; the dashboard's queries and the alerting rules, as shipped."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.ports import Ports
from gcd_testing.proc import children
from gcd_testing.prometheus import (
    RATE_INTERVAL,
    Container,
    Target,
    cluster_series,
    cluster_stand_in,
    running_prometheus,
)

from deployment import Manifest, container, find, render
from processes import REPO, running_stack, server_pid

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


def _envoy_pid(stack: subprocess.Popen[bytes]) -> int:
    (pid,) = [pid for pid, command in children(stack.pid).items() if "envoy" in command.split(" ", 1)[0]]
    return pid


@contextmanager
def watched_stack(workdir: Path) -> Iterator[Watched]:
    """A gcd-stack, scraped every second by a real Prometheus that also evaluates the rules."""
    pi = render("pi")
    deployment: Manifest = find(pi, "Deployment")
    namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
    pod = f"{name}-local"
    with running_stack(workdir) as (ports, stack):
        containers = [
            Container("server", lambda: server_pid(stack), False, container(pi, "server")["resources"]),
            Container("envoy", lambda: _envoy_pid(stack), True, container(pi, "envoy")["resources"]),
        ]
        replicas = int(deployment["spec"]["replicas"])
        with cluster_stand_in(lambda: cluster_series(namespace, name, pod, containers, replicas)) as cluster:
            server = {"namespace": namespace, "pod": pod, "container": "server"}
            envoy = {**server, "container": "envoy"}
            targets = [
                Target("gcd", f"{LOOPBACK}:{ports.metrics}", "/metrics", server),
                Target("gcd", f"{LOOPBACK}:{ports.envoy_metrics}", "/stats/prometheus", envoy),
                Target("kube-state-metrics", cluster, "/metrics"),
            ]
            with running_prometheus(targets, workdir, (RULES,)) as prometheus:
                yield Watched(prometheus, ports, stack, namespace)
