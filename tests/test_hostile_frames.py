"""HTTP/2 frames that no client sends, sent straight to gcd-server's port as any pod in the
cluster can (the NetworkPolicy opens 3000 to every pod): a CONTINUATION flood (a request whose
headers never end) and a rapid reset (streams opened and cancelled at once, CVE-2023-44487),
from several connections at once (as many as the server takes, for the rapid reset), as fast as
this machine sends them. During each, the server's
resident memory stays under its container's limit, where the kernel would kill it; after each,
both its ports answer health Check again within seconds."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from h2_frames import (
    CANCEL,
    CONTINUATION,
    END_HEADERS,
    FRAME_BYTES,
    HEADERS,
    RST_STREAM,
    attacker,
    frame,
)
from hpack import Encoder

from gcd_server.app import MAX_CONNECTIONS
from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.processes import server_is_serving
from gcd_testing.ports import free_port
from gcd_testing.proc import resident_bytes

from deployment import KUBECTL, memory_limit_bytes, render
from figures import record_figure
from processes import running_server, wait_until

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(KUBECTL is None, reason="kubectl with built-in kustomize is not installed"),
]
ATTACK_SECONDS = 4.0
RECOVERY_SECONDS = 10.0


def request_block(port: int) -> bytes:
    return Encoder().encode(
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/grpc.health.v1.Health/Check"),
            (":authority", f"{LOOPBACK}:{port}"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
    )


def endless_headers(port: int) -> Iterator[bytes]:
    """A request whose last header's value is declared 2^31-1 bytes long (HPACK: a literal
    without indexing, a new name, a 7-bit-prefix length), continued for ever."""
    length = 2**31 - 1 - 127
    varint = bytearray()
    while length >= 128:
        varint.append(length % 128 | 128)
        length //= 128
    varint.append(length)
    yield frame(HEADERS, 0, 1, request_block(port) + b"\x00\x06x-long\x7f" + bytes(varint))
    chunk = frame(CONTINUATION, 0, 1, b"a" * FRAME_BYTES)
    while True:
        yield chunk * 16


def rapid_resets(port: int) -> Iterator[bytes]:
    """Streams opened and cancelled at once, a hundred to a write."""
    block = request_block(port)
    for first in range(1, 2**31 - 200, 200):
        yield b"".join(
            frame(HEADERS, END_HEADERS, stream, block) + frame(RST_STREAM, 0, stream, CANCEL.to_bytes(4, "big"))
            for stream in range(first, first + 200, 2)
        )


@contextmanager
def peak_resident(pid: int) -> Iterator[list[int]]:
    """The largest VmRSS of pid, sampled every 50 ms while the block runs (a list of one)."""
    peak = [resident_bytes(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], resident_bytes(pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


@pytest.mark.parametrize(
    ("attack", "writes", "connections"),
    [("CONTINUATION flood", endless_headers, 8), ("rapid reset", rapid_resets, MAX_CONNECTIONS)],
)
def test_a_flood_of_frames_to_the_servers_port_stays_within_its_memory_limit(
    tmp_path: Path, attack: str, writes: Callable[[int], Iterator[bytes]], connections: int
) -> None:
    sidecar = free_port()
    with running_server(tmp_path, "--sidecar-port", str(sidecar)) as (port, process):
        until = time.monotonic() + ATTACK_SECONDS
        threads = [threading.Thread(target=attacker, args=(port, writes, until)) for _ in range(connections)]
        with peak_resident(process.pid) as peak:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(ATTACK_SECONDS + 5)
        # The cancelled streams hold RPC slots for a moment after the attack: the main port's own
        # clients may get RESOURCE_EXHAUSTED until they are freed.
        recovered = wait_until(
            lambda: server_is_serving(port) and server_is_serving(sidecar), RECOVERY_SECONDS, "both ports serving"
        )
    limit = memory_limit_bytes(render("pi"), "server")
    record_figure(
        f"{attack} from {connections} connections to the server's port for {ATTACK_SECONDS:.0f} s: its peak "
        f"resident memory (MiB; limit {limit / 2**20:.0f}), both ports serving again after (s)",
        f"{peak[0] / 2**20:.0f}, {recovered:.1f}",
    )
    assert peak[0] < limit
