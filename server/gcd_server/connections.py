"""The clients connected to a port of this host, as the kernel's TCP tables list them
(/proc/net/tcp and /proc/net/tcp6): in a pod's network namespace, the clients of gcd-server's
own port. grpcio offers no count of a server's connections short of the channelz service."""

import ipaddress
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("gcd_server")

_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_ESTABLISHED = "01"
_POLL_SECONDS = 0.2


def clients(port: int) -> list[str]:
    """The peers (address:port) of the established TCP connections whose local end is port."""
    peers = []
    for table in _TABLES:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            # sl local_address rem_address st ...; addresses are HEXADDR:HEXPORT, the address in
            # the kernel's byte order, 32-bit words for IPv6.
            local, remote, state = row.split()[1:4]
            if state == _ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == port:
                peers.append(_address(remote))
    return peers


def established_connections(port: int) -> int:
    """Established TCP connections whose local end is port."""
    return len(clients(port))


def _address(hex_address: str) -> str:
    address, port = hex_address.rsplit(":", 1)
    packed = b"".join(int(address[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(address), 8))
    host = str(ipaddress.ip_address(packed))
    return f"[{host}]:{int(port, 16)}" if ":" in host else f"{host}:{int(port, 16)}"


def wait_for_clients_to_leave(port: int, seconds: float) -> None:
    """Returns once no client is connected to port, or seconds from now; logs which."""
    started = time.monotonic()
    log.info("serving the clients of port %d for up to %.1fs more while their connections age out", port, seconds)
    while (left := clients(port)) and time.monotonic() - started < seconds:
        time.sleep(_POLL_SECONDS)
    log.info("clients of port %d gone after %.1fs, %d connection(s) left", port, time.monotonic() - started, len(left))
    if left:
        log.warning("still connected to port %d, cut off now: %s", port, ", ".join(left))
