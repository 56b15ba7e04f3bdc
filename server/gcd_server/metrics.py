"""Prometheus metrics of the RPCs this server handles, under the names grpc's ecosystem uses
(go-grpc-prometheus), so existing dashboards and alerts fit: grpc_server_handled_total and
grpc_server_handling_seconds, labelled by service, method and status code."""

from __future__ import annotations

import http
import http.server
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import prometheus_client

_LABELS = ("grpc_type", "grpc_service", "grpc_method")
# A GCD takes tens of microseconds; the buckets resolve that and still show a stall.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

HANDLED = prometheus_client.Counter(
    "grpc_server_handled_total", "RPCs completed on the server, by status code.", [*_LABELS, "grpc_code"]
)
HANDLING_SECONDS = prometheus_client.Histogram(
    "grpc_server_handling_seconds", "Time the server took to handle each unary RPC.", _LABELS, buckets=_BUCKETS
)


UNKNOWN_METHOD = "unknown"
# Calls of methods the server does not have, whatever their names: UNIMPLEMENTED.
UNKNOWN_METHODS = HANDLED.labels("unary", UNKNOWN_METHOD, UNKNOWN_METHOD, grpc.StatusCode.UNIMPLEMENTED.name)


def _code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The status the handler set, if any (ServicerContext.code(): in grpcio, not its stubs)."""
    code: grpc.StatusCode | None = context.code()  # type: ignore[attr-defined]
    return code


def _names(full_method: str) -> tuple[str, str]:
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


class RpcMetrics(grpc.ServerInterceptor):
    """Counts and times unary RPCs. Streaming ones (reflection) are not counted: they are
    long-lived and not what the service is measured by.

    grpc calls the interceptor for every RPC; the wrapped handler of each method is built once
    and reused, so a call costs two clock reads and two metric updates."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any] | None] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        full_method = handler_call_details.method
        if full_method in self._handlers:
            return self._handlers[full_method]
        handler = continuation(handler_call_details)
        if handler is None:
            # Under one name for them all: a client may make up any number of method names, and
            # a label value each would grow the server's memory and every scrape without bound.
            UNKNOWN_METHODS.inc()
            return None
        service, method = _names(full_method)
        wrapped = handler if handler.unary_unary is None else _observed(handler, service, method)
        self._handlers[full_method] = wrapped
        return wrapped


def _observed(handler: grpc.RpcMethodHandler[Any, Any], service: str, method: str) -> grpc.RpcMethodHandler[Any, Any]:
    behaviour = handler.unary_unary
    assert behaviour is not None
    seconds = HANDLING_SECONDS.labels("unary", service, method)
    handled: dict[grpc.StatusCode, prometheus_client.Counter] = {}

    def observed(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.UNKNOWN
        try:
            response = behaviour(request, context)
            code = _code(context) or grpc.StatusCode.OK
            return response
        except Exception:
            code = _code(context) or grpc.StatusCode.UNKNOWN
            raise
        finally:
            seconds.observe(time.perf_counter() - started)
            if code not in handled:
                handled[code] = HANDLED.labels("unary", service, method, code.name)
            handled[code].inc()

    return grpc.unary_unary_rpc_method_handler(
        observed,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


# prometheus_client's own server spends a thread on every connection, for as long as the client
# holds it: 2,000 idle connections cost 2,000 threads and 50 MiB here, and enough of them would
# take the container past its memory limit. A scrape takes milliseconds and Prometheus holds one
# connection per target, so a few connections, each closed after a few idle seconds, are plenty.
METRICS_MAX_CONNECTIONS = 16
METRICS_IDLE_SECONDS = 5.0
# http.server reads up to 100 header lines of 64 KiB each, all kept in memory: 16 connections
# could hold 100 MiB of it, dribbling a byte now and then. A scrape's request is a few hundred
# bytes, sent at once.
METRICS_MAX_REQUEST_BYTES = 16 * 1024
METRICS_REQUEST_SECONDS = 10.0


class _BoundedReader:
    """A connection's request bytes, METRICS_MAX_REQUEST_BYTES and METRICS_REQUEST_SECONDS at most:
    past either it reads as the end of the stream, and the handler gives up on the request."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._left = METRICS_MAX_REQUEST_BYTES
        self._deadline = time.monotonic() + METRICS_REQUEST_SECONDS

    def readline(self, size: int = -1) -> bytes:
        if self._left <= 0 or time.monotonic() > self._deadline:
            return b""
        line: bytes = self._raw.readline(self._left if size < 0 else min(size, self._left))
        self._left -= len(line)
        return line

    def read(self, size: int = -1) -> bytes:
        return b""  # a scrape sends no body

    def close(self) -> None:
        self._raw.close()


class _MetricsHandler(prometheus_client.MetricsHandler):
    # A client that sends nothing for this long is cut off (StreamRequestHandler's socket timeout).
    timeout = METRICS_IDLE_SECONDS

    def setup(self) -> None:
        super().setup()
        self.rfile = _BoundedReader(self.rfile)  # type: ignore[assignment]

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server answers a method it has no do_<METHOD> for with 501, a server fault; the
        # client asked for what this port does not serve.
        if code == http.HTTPStatus.NOT_IMPLEMENTED:
            code, message = http.HTTPStatus.METHOD_NOT_ALLOWED, "only GET is served here"
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:
        """No log line per request."""


class _BoundedMetricsServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A thread per connection, METRICS_MAX_CONNECTIONS at most: more are closed as they come."""

    daemon_threads = True
    # The listen backlog (socketserver's default is 5): a burst of connections waits here to be
    # accepted, and closed if over the limit, rather than retrying its SYN a second later.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._free = threading.BoundedSemaphore(METRICS_MAX_CONNECTIONS)
        super().__init__(address, _MetricsHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._free.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._free.release()


def serve_metrics(host: str, port: int) -> None:
    """/metrics on host:port, from a thread of its own."""
    server = _BoundedMetricsServer((host.strip("[]"), port))
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
