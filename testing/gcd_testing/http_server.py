"""A small HTTP server on a free loopback port, in a thread: a page of another origin for the
browser tests, a metrics endpoint for Prometheus to scrape."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gcd_stack.envoy_config import LOOPBACK


@contextmanager
def serving(body: Callable[[], str], content_type: str) -> Iterator[str]:
    """Answers every GET with body() (called each time); yields the server's host:port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            encoded = body().encode()
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
