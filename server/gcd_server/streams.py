"""Worker threads of their own for streaming RPCs, so that streams held open cannot starve the
unary calls (Compute, and the health Check that kubelet and Envoy probe with).

grpcio's synchronous server runs each RPC on one worker thread for the RPC's whole life, and a
stream waiting for its client's next message keeps its thread waiting too. Server reflection is
such a stream, and a client may hold it open for as long as its connection lives: a handful would
take every thread. Streams therefore run in a few slots; a stream that finds them all taken is
answered RESOURCE_EXHAUSTED at once and holds no thread. A stream is ended with
DEADLINE_EXCEEDED after max_seconds, whether its client keeps talking (each message restarts
every idle timer) or says nothing more: its messages are read by a thread of its own, so that
the worker thread waits for them no longer than the stream may last. (Envoy's max_stream_duration
on the reflection route and the connection's maximum age, gcd_server/app.py, are backstops.)
"""

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

Request = TypeVar("Request")
Response = TypeVar("Response")
StreamHandler = Callable[[Iterator[Request], grpc.ServicerContext], Iterator[Response]]


# Requests read ahead of the handler. The reader waits while this many are queued, and grpc
# starts no receive meanwhile (one per next() of the request iterator), so what a stream holds is
# these, the one the reader waits to queue and a stream window in the transport: a client that
# sends faster than the handler answers is held back by gRPC's flow control instead of
# filling the server's memory: unbounded, two reflection streams whose client sent requests as
# fast as they went took the server to 378 MiB through Envoy and to 466 MiB on 3000 within 5 s.
READ_AHEAD = 4
# How often a reader waiting for room looks whether its stream is over.
_READER_POLL_SECONDS = 0.1


class StreamSlots:
    """At most count streams served at once, across every streaming RPC bounded by bounded(),
    each for max_seconds at most."""

    def __init__(self, count: int, max_seconds: float) -> None:
        self.count = count
        self.max_seconds = max_seconds
        self._free = threading.BoundedSemaphore(count)

    def _until_deadline(self, requests: Iterator[Request], context: grpc.ServicerContext) -> Iterator[Request]:
        """requests, as they arrive, until the stream has lasted max_seconds."""
        deadline = time.monotonic() + self.max_seconds
        # (a request,), the end of the stream (None), or what ended it: the client cancelled,
        # or its connection closed. The reader ends with the RPC, aborted here or not.
        arrived: queue.Queue[tuple[Request] | BaseException | None] = queue.Queue(READ_AHEAD)
        over = threading.Event()

        def put(item: tuple[Request] | BaseException | None) -> None:
            while not over.is_set():
                try:
                    arrived.put(item, timeout=_READER_POLL_SECONDS)
                    return
                except queue.Full:
                    continue

        def read() -> None:
            try:
                for request in requests:
                    put((request,))
                    if over.is_set():
                        return
                put(None)
            except BaseException as error:
                put(error)

        threading.Thread(target=read, name="stream-reader", daemon=True).start()
        try:
            while True:
                # Also while requests keep coming: a backlog must not outlive the stream.
                left = deadline - time.monotonic()
                try:
                    if left <= 0:
                        raise queue.Empty
                    item = arrived.get(timeout=left)
                except queue.Empty:
                    context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED, f"a stream may last {self.max_seconds:g} s at most"
                    )
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item[0]
        finally:
            over.set()

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
