"""Starts, watches and stops the two processes of the local stack: gcd-server, then Envoy."""

import ctypes
import dataclasses
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

from gcd_server.stop_signal import StopSignal
from gcd_stack.envoy_config import LOOPBACK, write_local_config
from gcd_stack.ports import Ports
from gcd_stack.processes import (
    STOP_TIMEOUT_SECONDS,
    StartError,
    envoy_command,
    health_url,
    port_is_free,
    server_command,
    server_is_serving,
    stop_process,
    url_answers_ok,
    wait_until_ready,
)

_POLL_SECONDS = 0.1
# A server that keeps dying is restarted ever more slowly, as kubelet's CrashLoopBackOff does.
_FIRST_RESTART_DELAY_SECONDS = 0.5
_MAX_RESTART_DELAY_SECONDS = 8.0
_STABLE_AFTER_SECONDS = 10.0
_ENVOY_EXIT_TIMEOUT_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("gcd_stack")


class StackError(RuntimeError):
    pass


def _die_with_parent() -> None:
    # Linux only: if gcd-stack is killed outright, the kernel sends its children SIGTERM.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    # Output to the terminal, and a session of their own: Ctrl-C reaches gcd-stack alone, which
    # then stops them in order.
    return subprocess.Popen(
        args, start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None
    )


class Stack:
    """gcd-server on ports.grpc and Envoy on ports.envoy, both on loopback."""

    def __init__(self, ports: Ports, workdir: Path) -> None:
        self.ports = ports
        self.health_url = health_url(ports)
        self._envoy_config = workdir / "envoy.yaml"
        # In the stack's private directory: no other user, and no browser, can reach it.
        self.envoy_admin_socket = workdir / "envoy-admin.sock"
        self._server: subprocess.Popen[bytes] | None = None
        self._envoy: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        busy = [port for port in dataclasses.astuple(self.ports) if not port_is_free(port)]
        if busy:
            raise StackError(f"port(s) {', '.join(map(str, busy))} already in use on {LOOPBACK}; choose others")
        write_local_config(self._envoy_config, self.ports, str(self.envoy_admin_socket))
        try:
            self._server = self._start_server()
            wait_until_ready(lambda: server_is_serving(self.ports.grpc), self._server, "gcd-server")
            self._envoy = _spawn(envoy_command(self._envoy_config))
            wait_until_ready(lambda: url_answers_ok(self.health_url), self._envoy, "Envoy")
        except StartError as error:
            raise StackError(str(error)) from error

    def _start_server(self) -> subprocess.Popen[bytes]:
        return _spawn(
            server_command(
                self.ports.grpc,
                self.ports.metrics,
                "--envoy-admin",
                str(self.envoy_admin_socket),
                sidecar_port=self.ports.sidecar,
            )
        )

    def supervise(self, stop_signal: StopSignal) -> None:
        """Restarts gcd-server whenever it dies, until stop_signal; fails if Envoy dies."""
        assert self._server is not None and self._envoy is not None, "start() first"
        started_at = time.monotonic()
        delay = _FIRST_RESTART_DELAY_SECONDS
        while not stop_signal.wait(_POLL_SECONDS):
            if self._envoy.poll() is not None:
                raise StackError(f"Envoy exited with code {self._envoy.returncode}")
            if self._server.poll() is None:
                continue
            if time.monotonic() - started_at > _STABLE_AFTER_SECONDS:
                delay = _FIRST_RESTART_DELAY_SECONDS
            log.warning("gcd-server exited with code %s; restarting in %.1fs", self._server.returncode, delay)
            if stop_signal.wait(delay):
                break
            self._server = self._start_server()
            started_at = time.monotonic()
            delay = min(delay * 2, _MAX_RESTART_DELAY_SECONDS)

    def stop(self) -> None:
        """The server first (it drains Envoy, then itself), so in-flight RPCs finish through
        Envoy; then Envoy."""
        stop_process(self._server, STOP_TIMEOUT_SECONDS)
        stop_process(self._envoy, _ENVOY_EXIT_TIMEOUT_SECONDS)
