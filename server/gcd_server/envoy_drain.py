"""Draining the Envoy sidecar in front of this server, before the server itself stops.

In the pod gcd-server is stopped first and Envoy, a native sidecar, only after it has exited.
So the server begins the pod's shutdown: it asks Envoy, on Envoy's loopback admin port, to fail
its health checks and to drain its listeners, which tells every client (Connection: close on
HTTP/1.1, GOAWAY on HTTP/2) to take its next request elsewhere. It keeps serving for Envoy's
--drain-time-s while they do, and only then refuses new RPCs.
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
    """Starts Envoy's drain and returns once its drain time (at most max_wait_seconds) is over."""
    try:
        drain_seconds = min(_drain_seconds(admin_url), max_wait_seconds)
        _admin(f"{admin_url}/healthcheck/fail", method="POST")
        _admin(f"{admin_url}/drain_listeners?graceful&inboundonly", method="POST")
    except (OSError, ValueError, KeyError) as error:
        # The server's own drain still follows; only the clients' early warning is lost.
        log.warning("could not drain Envoy at %s: %s", admin_url, error)
        return
    log.info("Envoy at %s draining; serving %.1fs more while clients move away", admin_url, drain_seconds)
    time.sleep(drain_seconds)
