"""A stand-in for a Kubernetes Service as kube-proxy makes it, on loopback.

Each new TCP connection goes to one of the endpoints listed at that moment, and stays with that
endpoint until either side closes it, even after the endpoint leaves the list: kube-proxy steers
only new connections, and established ones keep their conntrack entry (kubernetes/kubernetes
pkg/proxy/conntrack/cleanup.go flushes UDP entries only). With no endpoint listed, a connection
is closed at once (kube-proxy rejects it). A change of endpoints takes effect only after a delay,
as it reaches each node's kube-proxy: the EndpointSlice controller, the watch, and kube-proxy's
own minimum sync period (1 s by default) all come between a pod's deletion and its last new
connection."""

from __future__ import annotations

import asyncio
import itertools
import threading
from types import TracebackType

from gcd_stack.envoy_config import LOOPBACK

_CHUNK_BYTES = 65536


class ServiceProxy:
    def __init__(self, propagation_seconds: float) -> None:
        self.propagation_seconds = propagation_seconds
        self._endpoints: list[int] = []
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.connections: dict[int, int] = {}

    def __enter__(self) -> ServiceProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, LOOPBACK, 0), self._loop
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
        """The endpoints new connections may go to (the EndpointSlice's ready ones), from
        propagation_seconds on, or at once."""
        endpoints = list(ports)

        def apply() -> None:
            self._endpoints = endpoints

        if at_once:
            apply()
        else:
            self._loop.call_soon_threadsafe(self._loop.call_later, self.propagation_seconds, apply)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        endpoints = self._endpoints
        if not endpoints:
            client_writer.close()
            return
        endpoint = endpoints[next(self._turn) % len(endpoints)]
        self.connections[endpoint] = self.connections.get(endpoint, 0) + 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(LOOPBACK, endpoint)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            _pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copies until EOF or error, then closes the far side: either end closing ends the flow."""
    try:
        while chunk := await reader.read(_CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()
