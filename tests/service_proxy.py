"""A stand-in for a Kubernetes Service as kube-proxy makes it, on loopback.

Each new TCP connection goes to one of the endpoints listed at that moment, and stays with that
endpoint until either side closes it, even after the endpoint leaves the list: kube-proxy steers
only new connections, and established ones keep their conntrack entry (kubernetes/kubernetes
pkg/proxy/conntrack/cleanup.go flushes UDP entries only). With no endpoint listed, a connection
is closed at once (kube-proxy rejects it). A change of endpoints takes effect only after a delay,
as it reaches each node's kube-proxy: the EndpointSlice controller, the watch, and kube-proxy's
own minimum sync period (1 s by default) all come between a pod's deletion and its last new
connection.

With one endpoint and a listening address of its own, it stands for a pod's IP too: every pod
listens on the same ports, on an address of its own, which is what a headless Service's DNS
name lists.

Each endpoint's requests are counted as they pass, and the time of its first: the calls of
HTTP/2 connections (one HEADERS frame each from the client: gRPC clients send no trailers) and
the requests of HTTP/1.1 ones (bodiless GETs, one header block each)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

from gcd_stack.envoy_config import LOOPBACK

_CHUNK_BYTES = 65536
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME_HEADER_BYTES = 9
_HEADERS_FRAME = 0x1

Listed = TypeVar("Listed")


class RequestCounter:
    """The requests in one connection's bytes from its client, fed as they pass."""

    def __init__(self) -> None:
        self._pending = b""
        self._http2: bool | None = None

    def feed(self, data: bytes) -> int:
        """How many requests data completes."""
        self._pending += data
        if self._http2 is None:
            if _HTTP2_PREFACE.startswith(self._pending):
                return 0
            self._http2 = self._pending.startswith(_HTTP2_PREFACE)
            self._pending = self._pending.removeprefix(_HTTP2_PREFACE)
        if not self._http2:
            *header_blocks, self._pending = self._pending.split(b"\r\n\r\n")
            return len(header_blocks)
        calls = 0
        while len(self._pending) >= _FRAME_HEADER_BYTES:
            end = _FRAME_HEADER_BYTES + int.from_bytes(self._pending[:3], "big")
            if len(self._pending) < end:
                break
            calls += self._pending[3] == _HEADERS_FRAME
            self._pending = self._pending[end:]
        return calls


class Listing(Generic[Listed]):
    """What a Service lists, as one node sees it: each change lands propagation_seconds after it
    is made (at once for 0), and in the order the changes were made. A rollout lists a new pod
    and delists an old one in the same instant; their two timers may fire in either order, and
    the older change must not land last, or the deleted pod would stay listed for good."""

    def __init__(self, propagation_seconds: float, initial: Listed) -> None:
        self.propagation_seconds = propagation_seconds
        self.current = initial
        self._made = itertools.count(1)
        self._landed = 0
        self._lock = threading.Lock()

    def change(self, listed: Listed, *, at_once: bool = False) -> None:
        made = next(self._made)

        def land() -> None:
            with self._lock:
                if made > self._landed:
                    self._landed, self.current = made, listed

        if at_once or not self.propagation_seconds:
            land()
            return
        timer = threading.Timer(self.propagation_seconds, land)
        timer.daemon = True
        timer.start()


class ServiceProxy:
    def __init__(
        self, propagation_seconds: float, address: str = LOOPBACK, port: int = 0, source: str | None = None
    ) -> None:
        self.address = address
        self._port = port
        # The address the endpoints see connections come from (kube-proxy's SNAT, a pod's IP).
        self._source = (source, 0) if source else None
        self._endpoints: Listing[list[int]] = Listing(propagation_seconds, [])
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.connections: Counter[int] = Counter()
        self.requests: Counter[int] = Counter()
        # time.monotonic() of each endpoint's first request.
        self.first_request: dict[int, float] = {}

    def __enter__(self) -> ServiceProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, self.address, self._port), self._loop
        ).result(5)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def set_endpoints(self, ports: list[int], *, at_once: bool = False) -> None:
        """The endpoints new connections may go to (the EndpointSlice's ready ones), from the
        propagation delay on, or at once."""
        self._endpoints.change(list(ports), at_once=at_once)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        endpoints = self._endpoints.current
        if not endpoints:
            client_writer.close()
            return
        endpoint = endpoints[next(self._turn) % len(endpoints)]
        self.connections[endpoint] += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                LOOPBACK, endpoint, local_addr=self._source
            )
        except OSError:
            client_writer.close()
            return
        counter = RequestCounter()

        def count(chunk: bytes) -> None:
            if requests := counter.feed(chunk):
                self.requests[endpoint] += requests
                self.first_request.setdefault(endpoint, time.monotonic())

        await asyncio.gather(
            _pipe(client_reader, upstream_writer, count),
            _pipe(upstream_reader, client_writer),
            return_exceptions=True,
        )


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, passing: Callable[[bytes], None] | None = None
) -> None:
    """Copies until EOF or error, then closes the far side: either end closing ends the flow;
    passing sees each chunk first."""
    try:
        while chunk := await reader.read(_CHUNK_BYTES):
            if passing:
                passing(chunk)
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()
