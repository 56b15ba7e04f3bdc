"""Worker threads of their own for streaming RPCs, so that streams held open cannot starve the
unary calls (Compute, and the health Check that kubelet and Envoy probe with).

grpcio's synchronous server runs each RPC on one worker thread for the RPC's whole life, and a
stream waiting for its client's next message keeps its thread waiting too. Server reflection is
such a stream, and a client may hold it open for as long as its connection lives: a handful would
take every thread. Streams therefore run in a few slots; a stream that finds them all taken is
answered RESOURCE_EXHAUSTED at once and holds no thread. A stream that still sends after
max_seconds is ended with DEADLINE_EXCEEDED (each message restarting every idle timer, it would
otherwise live as long as its connection). One that sends nothing more holds its slot until its
connection reaches its maximum age (gcd_server/app.py), or, through Envoy, until the reflection
route's max_stream_duration (envoy/envoy.yaml), whichever comes first.
"""

import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

Request = TypeVar("Request")
Response = TypeVar("Response")
StreamHandler = Callable[[Iterator[Request], grpc.ServicerContext], Iterator[Response]]


class StreamSlots:
    """At most count streams served at once, across every streaming RPC bounded by bounded(),
    each for max_seconds at most."""

    def __init__(self, count: int, max_seconds: float) -> None:
        self.count = count
        self.max_seconds = max_seconds
        self._free = threading.BoundedSemaphore(count)

    def _until_deadline(self, requests: Iterator[Request], context: grpc.ServicerContext) -> Iterator[Request]:
        deadline = time.monotonic() + self.max_seconds
        for request in requests:
            if time.monotonic() > deadline:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"a stream may last {self.max_seconds:g} s at most")
            yield request

    def bounded(self, handler: StreamHandler[Request, Response]) -> StreamHandler[Request, Response]:
        """handler, refused with RESOURCE_EXHAUSTED while every slot is taken."""

        def serve(requests: Iterator[Request], context: grpc.ServicerContext) -> Iterator[Response]:
            if not self._free.acquire(blocking=False):
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, f"{self.count} streams are open already; try again shortly"
                )
            try:
                yield from handler(self._until_deadline(requests, context), context)
            finally:
                # Also when the client cancels: the stream's request iterator raises, or grpc
                # drops the generator, which closes it.
                self._free.release()

        return serve
