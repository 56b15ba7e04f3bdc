"""Processes the tests start and stop: gcd-server, gcd-stack, Envoy alone, a server in-process;
everything on loopback, on free ports, and stopped by the test that started it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health

from gcd_server.app import build_server
from gcd_server.settings import DEFAULT_MAX_CONCURRENT_RPCS, Settings
from gcd_stack import processes
from gcd_stack.envoy_config import (
    LOOPBACK,
    Config,
    abstract_admin_socket,
    connection_manager,
    file_routes,
    health_path,
    local_config,
    packaged_config,
)
from gcd_stack.ports import Ports
from gcd_stack.processes import (
    StartError,
    envoy_command,
    envoy_is_live,
    server_command,
    server_is_serving,
    wait_until_ready,
)
from gcd_testing.ports import distinct_free_ports, free_port, free_ports
from gcd_testing.proc import children

REPO = Path(__file__).resolve().parents[1]
HEALTH_PATH = health_path(packaged_config())
SCRIPTS = Path(sysconfig.get_path("scripts"))


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Polls condition until it holds; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - started


@contextmanager
def running(
    args: list[str], log_dir: Path, name: str, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """args running with its output in log_dir/<name>.out and .err, stopped on the way out."""
    with processes.running(args, log_dir / f"{name}.out", log_dir / f"{name}.err", env) as process:
        yield process


# Of each log, in a start's failure: enough for a backtrace or a config error.
LOG_TAIL_LINES = 40


def wait_for_start(process: subprocess.Popen[bytes], ready: Callable[[], bool], log_dir: Path, name: str) -> None:
    """Waits until ready() holds; fails with the end of the process's own output (stderr and
    stdout: a stack's holds its server's and its Envoy's) if it exits first or is not ready."""
    try:
        wait_until_ready(ready, process, name)
    except StartError as error:
        logs = []
        for log in (log_dir / f"{name}.err", log_dir / f"{name}.out"):
            tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:] if log.exists() else []
            logs.append(f"--- the end of {log}:\n" + "\n".join(tail))
        raise StartError("\n".join([str(error), *logs])) from error


@contextmanager
def running_server(log_dir: Path, *extra: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A gcd-server of its own on free loopback ports, serving; logs in log_dir/server.*."""
    port, metrics_port = distinct_free_ports(2)
    with running(server_command(port, metrics_port, *extra), log_dir, "server") as process:
        wait_for_start(process, lambda: server_is_serving(port), log_dir, "server")
        yield port, process


def stack_command(ports: Ports) -> list[str]:
    # gcd-stack has a --<field>-port flag for each field of Ports.
    flags = {
        f"--{field.name.replace('_', '-')}-port": getattr(ports, field.name) for field in dataclasses.fields(ports)
    }
    return [str(SCRIPTS / "gcd-stack"), *(str(item) for flag in flags.items() for item in flag)]


@contextmanager
def running_stack(
    log_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[tuple[Ports, subprocess.Popen[bytes]]]:
    """gcd-stack on free ports, once it says it is ready (and so supervises the server); logs in
    log_dir/stack.*. env adds to this process's environment, which the server and Envoy inherit."""
    ports = free_ports()
    with running(stack_command(ports), log_dir, "stack", {**os.environ, **(env or {})}) as process:
        wait_for_start(process, lambda: "gcd-stack ready" in (log_dir / "stack.out").read_text(), log_dir, "stack")
        yield ports, process


def server_pid(stack: subprocess.Popen[bytes]) -> int:
    """The gcd-server that a gcd-stack runs now."""
    (pid,) = [pid for pid, command in children(stack.pid).items() if "gcd_server" in command]
    return pid


def envoy_pid(stack: subprocess.Popen[bytes]) -> int:
    """The Envoy that a gcd-stack runs (its program's path names it; the server's flags may too)."""
    (pid,) = [pid for pid, command in children(stack.pid).items() if "envoy" in command.split(" ", 1)[0]]
    return pid


def file_content_types(config: Config) -> dict[str, str]:
    """The content-type each of config's file routes answers with, by path."""
    return {
        path: next(
            added["header"]["value"]
            for added in route["response_headers_to_add"]
            if added["header"]["key"] == "content-type"
        )
        for path, route in file_routes(config).items()
    }


def forwarding_routes(config: Config) -> list[Config]:
    """Every route of config's listeners that forwards to a cluster (not the direct answers)."""
    return [
        route
        for listener in config["static_resources"]["listeners"]
        for host in connection_manager(config, listener["name"])["route_config"]["virtual_hosts"]
        for route in host.get("routes", [])
        if "route" in route
    ]


@dataclass
class HeldCall:
    """A server under test with one RPC in flight that lasts until release is set."""

    port: int
    server: grpc.Server
    health_servicer: health.HealthServicer
    channel: grpc.Channel
    in_flight: grpc.Future[bytes]
    release: threading.Event


@contextmanager
def held_call(payload: bytes, max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS) -> Iterator[HeldCall]:
    """A real server (build_server) with an extra method, test.Slow/Hold, one call of which is
    in flight until release is set."""
    port = free_port()
    settings = Settings(LOOPBACK, port, grace_seconds=10, log_level="INFO", max_concurrent_rpcs=max_concurrent_rpcs)
    server, health_servicer = build_server(settings)
    entered, release = threading.Event(), threading.Event()

    def hold(request: bytes, context: grpc.ServicerContext) -> bytes:
        entered.set()
        release.wait(30)
        return request

    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(hold)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Slow", {"Hold": handler}),))
    server.start()
    try:
        with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
            call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/test.Slow/Hold")
            in_flight = call.future(payload, timeout=20)
            assert entered.wait(5)
            yield HeldCall(port, server, health_servicer, channel, in_flight, release)
    finally:
        release.set()
        server.stop(0).wait()


def local_envoy_config(ports: Ports) -> Config:
    """envoy/envoy.yaml as gcd-stack runs it on ports."""
    return local_config(packaged_config(), ports)


@contextmanager
def envoy_alone(config: Config, ports: Ports, log_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Envoy by itself with config (for upstream ports.sidecar), once its admin reports ready."""
    path = log_dir / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    with running(envoy_command(path), log_dir, "envoy") as process:
        wait_for_start(process, lambda: envoy_is_live(abstract_admin_socket(ports)), log_dir, "envoy")
        yield process


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects among a log file's lines (grpc's own C-level lines are plain text)."""
    records = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def messages(path: Path, logger: str = "gcd_server") -> list[str]:
    return [record["message"] for record in json_lines(path) if record.get("logger") == logger]
