"""Draining the Envoy sidecar in front of this server before the server stops, and readmitting
it when the server starts again.

In the pod gcd-server is stopped first and Envoy, a native sidecar, only after it has exited.
So the server begins the pod's shutdown: it tells Envoy, on Envoy's loopback admin port, to fail
its health checks. While failed, Envoy answers its health path 503 and closes every client
connection after the request in progress (Connection: close on HTTP/1.1, GOAWAY on HTTP/2:
DrainManagerImpl::drainClose in envoyproxy/envoy source/server/drain_manager_impl.cc), so each
client takes its next request elsewhere. The server keeps serving for Envoy's --drain-time-s
while they do, and only then refuses new RPCs.

The failed state outlives the server: Envoy keeps it until told /healthcheck/ok. kubelet restarts
gcd-server alone after a failed liveness probe (preStop and SIGTERM run then too), and gcd-stack
restarts a server that exits, so a server that starts beside a running Envoy readmits it.
Envoy's listeners are never drained (/drain_listeners cannot be undone short of restarting Envoy).
"""

import json
import logging
import time
import urllib.request

log = logging.getLogger("gcd_server")

_ADMIN_TIMEOUT_SECONDS = 2.0


def _admin(url: str, method: str = "GET") -> bytes:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=_ADMIN_TIMEOUT_SECONDS) as response:
        body: bytes = response.read()
    return body


def _drain_seconds(admin_url: str) -> float:
    """The --drain-time-s Envoy was started with, as its /server_info reports it ("2s")."""
    options = json.loads(_admin(f"{admin_url}/server_info"))["command_line_options"]
    return float(options["drain_time"].removesuffix("s"))


def drain_envoy(admin_url: str, max_wait_seconds: float) -> None:
    """Fails Envoy's health checks and returns once its drain time (at most max_wait_seconds) is over."""
    try:
        drain_seconds = min(_drain_seconds(admin_url), max_wait_seconds)
        _admin(f"{admin_url}/healthcheck/fail", method="POST")
    except (OSError, ValueError, KeyError) as error:
        # The server's own drain still follows; only the clients' early warning is lost.
        log.warning("could not drain Envoy at %s: %s", admin_url, error)
        return
    log.info("Envoy at %s draining; serving %.1fs more while clients move away", admin_url, drain_seconds)
    time.sleep(drain_seconds)


def readmit_envoy(admin_url: str) -> None:
    """Undoes the drain an earlier run of this server may have left in Envoy."""
    try:
        _admin(f"{admin_url}/healthcheck/ok", method="POST")
    except OSError as error:
        # No Envoy listening (yet): one that starts now begins healthy, so there is nothing to undo.
        log.info("Envoy at %s not reached to readmit it (%s); a starting Envoy needs none", admin_url, error)
        return
    log.info("Envoy at %s readmitted: its health follows this server's again", admin_url)
