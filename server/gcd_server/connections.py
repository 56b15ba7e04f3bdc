"""The clients connected to a port of this host, as the kernel's TCP tables list them
(/proc/net/tcp and /proc/net/tcp6): in a pod's network namespace, the clients of gcd-server's
own port. grpcio offers no count of a server's connections short of the channelz service."""

import logging
import time
from pathlib import Path

log = logging.getLogger("gcd_server")

_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_ESTABLISHED = "01"
_POLL_SECONDS = 0.2


def established_connections(port: int) -> int:
    """Established TCP connections whose local end is port."""
    count = 0
    for table in _TABLES:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            # sl local_address rem_address st ...; addresses are HEXADDR:HEXPORT.
            local, state = row.split()[1], row.split()[3]
            count += state == _ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == port
    return count


def wait_for_clients_to_leave(port: int, seconds: float) -> None:
    """Returns once no client is connected to port, or seconds from now; logs which."""
    started = time.monotonic()
    log.info("serving the clients of port %d for up to %.1fs more while their connections age out", port, seconds)
    while (left := established_connections(port)) and time.monotonic() - started < seconds:
        time.sleep(_POLL_SECONDS)
    log.info("clients of port %d gone after %.1fs, %d connection(s) left", port, time.monotonic() - started, left)
