"""A real Prometheus (Debian's prometheus package) scraping a running gcd-stack, and a stand-in
for what a cluster adds to it: kube-state-metrics' and cAdvisor's series for one gcd pod, with
the requests and limits of the pod's manifest and the CPU and memory of the stack's processes."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.processes import StartError, running, url_answers_ok, wait_until_ready
from gcd_testing.ports import free_port
from gcd_testing.proc import cpu_seconds, resident_bytes

# The Debian package with both programs below.
DEBIAN_PACKAGES = ("prometheus",)
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
# Scrapes this often, so that a test has several samples of every series within seconds.
SCRAPE_SECONDS = 1
# What Grafana would put for $__rate_interval at that scrape interval, and a little more.
RATE_INTERVAL = "10s"


@dataclass(frozen=True)
class Target:
    """One scrape: where, and the labels the Prometheus Operator's PodMonitor would give it."""

    job: str
    address: str
    path: str
    labels: Mapping[str, str] = field(default_factory=dict)


def _config(targets: list[Target], rule_files: tuple[Path, ...]) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": f"{target.job}-{index}",
                "metrics_path": target.path,
                "static_configs": [{"targets": [target.address], "labels": {"job": target.job, **target.labels}}],
            }
            for index, target in enumerate(targets)
        ],
    }


# Another process may take the free port picked for Prometheus before it binds it: try again.
_START_ATTEMPTS = 3


@contextmanager
def running_prometheus(targets: list[Target], workdir: Path, rule_files: tuple[Path, ...] = ()) -> Iterator[str]:
    """Prometheus on a free loopback port scraping targets, until the block ends; its base URL."""
    assert PROMETHEUS is not None, "prometheus is not installed"
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(_config(targets, rule_files)))
    for attempt in range(1, _START_ATTEMPTS + 1):
        url = f"http://{LOOPBACK}:{free_port()}"
        command = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
        ]
        with running(command, workdir / "prometheus.log") as process:
            try:
                wait_until_ready(lambda: url_answers_ok(f"{url}/-/ready"), process, "prometheus")  # noqa: B023 (called at once)
            except StartError:
                if attempt == _START_ATTEMPTS:
                    raise
                continue
            yield url
            return


def _api(url: str, path: str, **params: str) -> Any:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=10) as response:
        answer = json.load(response)
    if answer["status"] != "success":
        raise RuntimeError(f"{path} {params}: {answer}")
    return answer["data"]


def query(url: str, expr: str) -> list[dict[str, Any]]:
    """The instant vector expr evaluates to now (PromQL through the HTTP API)."""
    result: list[dict[str, Any]] = _api(url, "/api/v1/query", query=expr)["result"]
    return result


def query_range(url: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = _api(
        url, "/api/v1/query_range", query=expr, start=str(start), end=str(end), step=str(step)
    )["result"]
    return result


def rule_groups(url: str) -> list[dict[str, Any]]:
    """The rule groups Prometheus loaded, each rule with its health and state."""
    groups: list[dict[str, Any]] = _api(url, "/api/v1/rules")["groups"]
    return groups


def wait_for_samples(url: str, expr: str, timeout: float = 60) -> None:
    """Waits until expr has data: the scrapes it needs have happened."""
    deadline = time.monotonic() + timeout
    while not query(url, expr):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no data for {expr} within {timeout}s")
        time.sleep(SCRAPE_SECONDS / 2)


# A metric name where PromQL selects one: followed by its label matchers or a range.
_SELECTED = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")


def metric_names(expr: str) -> set[str]:
    """The metrics a query selects (every selector here is written with braces)."""
    return set(_SELECTED.findall(expr))


class ProcessHistory:
    """The process playing a container now, and how often it was replaced: a restart, to
    kube-state-metrics (the local stack restarts a server that dies, with a new pid)."""

    def __init__(self, find: Callable[[], int]) -> None:
        self._find = find
        self._seen: set[int] = set()

    def pid(self) -> int:
        pid = self._find()
        self._seen.add(pid)
        return pid

    def restarts(self) -> int:
        return max(len(self._seen) - 1, 0)


@dataclass(frozen=True)
class Container:
    """A container of the pod: its manifest's name and resources, whether the manifest declares
    it an init container (as the Envoy sidecar is), and the process that plays it."""

    name: str
    process: ProcessHistory
    init: bool
    resources: Mapping[str, Mapping[str, str]]


_UNITS = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(text: str) -> float:
    """A Kubernetes quantity (500m, 128Mi) as the number kube-state-metrics reports."""
    for suffix, factor in _UNITS.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def cluster_series(namespace: str, deployment: str, pod: str, containers: list[Container], replicas: int) -> str:
    """kube-state-metrics' and cAdvisor's series for one pod, by their upstream names: init
    containers (the Envoy sidecar) under kube_pod_init_container_*, as kube-state-metrics reports
    them (kubernetes/kube-state-metrics internal/store/pod.go)."""
    where = f'namespace="{namespace}"'
    lines = [
        f'kube_deployment_spec_replicas{{{where},deployment="{deployment}"}} {replicas}',
        f'kube_deployment_status_replicas_available{{{where},deployment="{deployment}"}} {replicas}',
    ]
    for container in containers:
        family = "kube_pod_init_container" if container.init else "kube_pod_container"
        at = f'{where},pod="{pod}",container="{container.name}"'
        for kind in ("requests", "limits"):
            for resource, amount in container.resources[kind].items():
                unit = "core" if resource == "cpu" else "byte"
                lines.append(f'{family}_resource_{kind}{{{at},resource="{resource}",unit="{unit}"}} {quantity(amount)}')
        try:
            pid = container.process.pid()
            usage = [f"container_cpu_usage_seconds_total{{{at}}} {cpu_seconds(pid)}"]
            usage.append(f"container_memory_working_set_bytes{{{at}}} {resident_bytes(pid)}")
        except (ValueError, OSError):
            usage = []  # not running this instant: cAdvisor has nothing to say of it either
        lines.append(f"{family}_status_restarts_total{{{at}}} {container.process.restarts()}")
        lines += usage
    return "\n".join(lines) + "\n"
