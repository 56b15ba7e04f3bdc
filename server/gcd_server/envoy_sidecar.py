"""Draining the Envoy sidecar in front of this server before the server stops, and readmitting
it when the server starts again.

In the pod gcd-server is stopped first and Envoy, a native sidecar, only after it has exited.
So the server begins the pod's shutdown: it tells Envoy, on the unix socket of Envoy's admin API
(an abstract one in the pod, which only the pod's containers reach), to fail its health checks.
While failed, Envoy answers its health path 503 and closes each client connection as it sends
that connection's next response (Connection: close on HTTP/1.1, GOAWAY on HTTP/2:
DrainManagerImpl::drainClose in envoyproxy/envoy source/server/drain_manager_impl.cc),
so every client takes its next request elsewhere. A connection that sends nothing is closed by
Envoy's idle timeout instead (envoy/envoy.yaml: 10 s, then its 2 s drain_timeout), well within
Envoy's --drain-time-s. The server keeps serving until Envoy has no client connection left, or
--drain-time-s is over, and only then refuses new RPCs.

The failed state outlives the server: Envoy keeps it until told /healthcheck/ok. kubelet restarts
gcd-server alone after a failed liveness probe (preStop and SIGTERM run then too), and gcd-stack
restarts a server that exits, so a server that starts beside a running Envoy readmits it.
Envoy's listeners are never drained (/drain_listeners cannot be undone short of restarting Envoy).
"""

import http.client
import json
import logging
import socket
import threading
import time

log = logging.getLogger("gcd_server")

_ADMIN_TIMEOUT_SECONDS = 2.0
_POLL_SECONDS = 0.1
# The stat_prefix of envoy/envoy.yaml's REST and gRPC listener (a test holds the two together):
# its open client connections, without the metrics listener's scrapers.
CLIENT_CONNECTIONS_STAT = "http.gcd_http.downstream_cx_active"
_READMIT_FIRST_RETRY_SECONDS = 1.0
_READMIT_MAX_RETRY_SECONDS = 10.0


class AdminError(OSError):
    """Envoy's admin API answered, but not 200."""


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket; a path starting with @ names an abstract socket."""

    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("envoy", timeout=timeout)
        self._address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._address)


def admin_request(socket_path: str, path: str, method: str = "GET", timeout: float = _ADMIN_TIMEOUT_SECONDS) -> bytes:
    """The body of Envoy's answer to method path on its admin socket; AdminError unless 200."""
    connection = _UnixConnection(socket_path, timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
    except http.client.HTTPException as error:
        raise AdminError(f"{method} {path}: {error!r}") from error
    finally:
        connection.close()
    if response.status != 200:
        raise AdminError(f"{method} {path}: HTTP {response.status}")
    return body


def _drain_seconds(admin_socket: str) -> float:
    """The --drain-time-s Envoy was started with, as its /server_info reports it ("15s")."""
    options = json.loads(admin_request(admin_socket, "/server_info"))["command_line_options"]
    return float(options["drain_time"].removesuffix("s"))


def _client_connections(admin_socket: str, timeout: float) -> int | None:
    """Envoy's open client connections, or None if Envoy does not say within timeout seconds."""
    try:
        path = f"/stats?filter=^{CLIENT_CONNECTIONS_STAT.replace('.', '[.]')}$"
        text = admin_request(admin_socket, path, timeout=timeout).decode()
        name, _, value = text.strip().partition(": ")
        return int(value) if name == CLIENT_CONNECTIONS_STAT else None
    except (OSError, ValueError):
        return None


class EnvoySidecar:
    """The Envoy in front of this server, through its admin API on the unix socket admin_socket."""

    def __init__(self, admin_socket: str) -> None:
        self.admin_socket = admin_socket
        # Held while readmitting: a readmission must never land after the drain has begun.
        self._lock = threading.Lock()
        self._draining = False

    def readmit_in_background(self) -> None:
        """Undoes the drain an earlier run of this server may have left in Envoy, retrying until
        Envoy has taken it: a pod whose Envoy stayed failed would never be Ready again."""
        threading.Thread(target=self._readmit, name="readmit-envoy", daemon=True).start()

    def _readmit(self) -> None:
        delay = _READMIT_FIRST_RETRY_SECONDS
        while True:
            with self._lock:
                if self._draining:
                    return
                try:
                    admin_request(self.admin_socket, "/healthcheck/ok", method="POST")
                except (ConnectionRefusedError, FileNotFoundError):
                    # Nothing listens yet: an Envoy that starts now begins healthy.
                    log.info("Envoy at %s not started yet; a starting Envoy needs no readmission", self.admin_socket)
                    return
                except OSError as error:
                    # Up but slow (a Pi under its CPU limit) or answering oddly: ask again.
                    log.warning("could not readmit Envoy at %s (%s); again in %.1fs", self.admin_socket, error, delay)
                else:
                    log.info("Envoy at %s readmitted: its health follows this server's again", self.admin_socket)
                    return
            time.sleep(delay)
            delay = min(2 * delay, _READMIT_MAX_RETRY_SECONDS)

    def drain(self) -> None:
        """Fails Envoy's health checks, then returns once Envoy's clients have all gone, or once
        its --drain-time-s is over, counted from this call (the pod's shutdown budget)."""
        started = time.monotonic()
        with self._lock:
            self._draining = True
        try:
            limit = _drain_seconds(self.admin_socket)
            admin_request(self.admin_socket, "/healthcheck/fail", method="POST")
        except (OSError, ValueError, KeyError) as error:
            # The server's own drain still follows; only the clients' early warning is lost.
            log.warning("could not drain Envoy at %s: %s", self.admin_socket, error)
            return
        log.info("Envoy at %s draining; serving up to %.1fs more while its clients move away", self.admin_socket, limit)
        left = None
        while (remaining := limit - (time.monotonic() - started)) > 0:
            left = _client_connections(self.admin_socket, timeout=min(_ADMIN_TIMEOUT_SECONDS, remaining))
            if left == 0:
                break
            time.sleep(_POLL_SECONDS)
        log.info("Envoy drained after %.1fs, %s client connection(s) left", time.monotonic() - started, left)
