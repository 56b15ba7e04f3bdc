"""HTTP clients for the tests, polite and otherwise: a request as a library sends it, or as raw
bytes on the wire."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gcd_server.app import SERVICE_NAME
from gcd_stack.envoy_config import LOOPBACK


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    port: int, path: str, method: str = "GET", headers: Mapping[str, str] | None = None, body: bytes | None = None
) -> Reply:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def assert_rest_reply(reply: Reply) -> None:
    """What every REST reply shares: a JSON body, and nothing of gRPC showing through."""
    assert reply.headers["content-type"] == "application/json"
    assert not [name for name in reply.headers if name.startswith("grpc-")]


def http_request_bytes(
    method: str, target: str, headers: Mapping[str, str] | None = None, body: bytes = b"", version: str = "HTTP/1.1"
) -> bytes:
    """A request as written on the wire, so that tests can also send what clients should not."""
    lines = [f"{method} {target} {version}", "Host: gcd.test"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def raw_http(port: int, request: bytes, timeout: float = 5.0) -> Reply:
    """Sends request bytes as they are and reads one response; a hang raises TimeoutError."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as connection:
        connection.sendall(request)
        response = http.client.HTTPResponse(connection, method=request.split(b" ", 1)[0].decode(errors="replace"))
        response.begin()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())


# gcd.v1.GCDService/Compute as a gRPC or gRPC-Web path.
COMPUTE = f"/{SERVICE_NAME}/Compute"
GRPC_WEB_BINARY = "application/grpc-web+proto"
GRPC_WEB_TEXT = "application/grpc-web-text"


def preflight_headers(origin: str, method: str = "GET", request_headers: str = "") -> dict[str, str]:
    """What a browser sends before a cross-origin call that needs a CORS preflight."""
    asked = {"origin": origin, "access-control-request-method": method}
    if request_headers:
        asked["access-control-request-headers"] = request_headers
    return asked


def grpc_web_headers(content_type: str = GRPC_WEB_BINARY) -> dict[str, str]:
    """What a gRPC-Web client sends with a call, asking for an answer in the same encoding."""
    return {"content-type": content_type, "accept": content_type, "x-grpc-web": "1"}


def raw_exchange(port: int, requests: bytes, timeout: float = 10.0) -> bytes:
    """Sends requests as they are and reads every byte until the server closes the connection
    (the last request should ask for that)."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as connection:
        connection.sendall(requests)
        return b"".join(iter(lambda: connection.recv(65536), b""))


@contextmanager
def open_connections(port: int, count: int, first_bytes: bytes = b"") -> Iterator[list[socket.socket]]:
    """count connections held open, each having sent first_bytes (idle ones: none), closed on the
    way out."""
    with ExitStack() as held:
        connections = []
        for _ in range(count):
            connection = held.enter_context(socket.create_connection((LOOPBACK, port), timeout=15))
            if first_bytes:
                connection.sendall(first_bytes)
            connections.append(connection)
        yield connections


def scrape(port: int, path: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample on a Prometheus text page: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def handled(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], method: str, code: str, service: str = SERVICE_NAME
) -> float:
    """The count of method's calls gcd-server finished with code, among samples (scrape's)."""
    labels = {"grpc_type": "unary", "grpc_service": service, "grpc_method": method, "grpc_code": code}
    return samples.get(("grpc_server_handled_total", frozenset(labels.items())), 0.0)
