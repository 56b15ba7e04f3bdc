"""What Linux says about a process in /proc: its children, whether it lives, its CPU and memory."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # The command name in /proc/PID/stat may hold spaces; the fields after its ')' do not.
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def children(parent: int) -> dict[int, str]:
    """Live child processes of parent: pid -> command line."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        pid = int(stat.parent.name)
        try:
            state, ppid = _stat_fields(pid)[:2]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(ppid) == parent and state != "Z":
            found[pid] = cmdline
    return found


def is_alive(pid: int) -> bool:
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _status(pid: int) -> dict[str, str]:
    return dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())


def memory_mib(pid: int) -> tuple[float, float]:
    """Peak resident memory, and the anonymous part of what is resident now. The rest is pages
    of the program's files (Envoy's 100 MB binary, Python's libraries): shared, reclaimable,
    and more or fewer of them resident from one run to the next."""
    status = _status(pid)
    return int(status["VmHWM"].split()[0]) / 1024, int(status["RssAnon"].split()[0]) / 1024


def thread_count(pid: int) -> int:
    return int(_status(pid)["Threads"])


def resident_bytes(pid: int) -> int:
    """Memory resident now (VmRSS): the nearest a process comes to its container's working set."""
    return int(_status(pid)["VmRSS"].split()[0]) * 1024


_TCP_LISTEN = "0A"


def _listening_sockets(pid: int | str) -> Iterator[tuple[int, str]]:
    """The port and inode of every TCP socket, IPv4 or IPv6, in LISTEN state in the network
    namespace of pid ("self" for this process's)."""
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local_address, state, inode = fields[1], fields[3], fields[9]
            if state == _TCP_LISTEN:
                yield int(local_address.rpartition(":")[2], 16), inode


def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports, IPv4 or IPv6, that the process listens on (its sockets in LISTEN state)."""
    inodes = set()
    for link in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(link)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return {port for port, inode in _listening_sockets(pid) if inode in inodes}


def anything_listens_on(port: int) -> bool:
    """Whether any process of this network namespace listens on the TCP port. Unlike a trial bind,
    it is not fooled by another client's connection that happens to have the port as its own,
    which is common while other tests open and close thousands of connections."""
    return any(listening == port for listening, _ in _listening_sockets("self"))
