"""Hostile input on gcd-server's gRPC port: every call gets a gRPC status, the server never
crashes, and its health stays SERVING."""

import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.events
import pytest

from gcd.v1 import gcd_pb2
from gcd_server.app import MAX_RECEIVE_MESSAGE_BYTES, SERVICE_NAME
from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.processes import server_is_serving
from gcd_testing.grpc_frame import grpc_frame

from figures import record_figure
from processes import running_server

pytestmark = pytest.mark.faults
COMPUTE = f"/{SERVICE_NAME}/Compute"
seen = {"cases": 0}


def h2_call(port: int, path: str, body: bytes, **extra_headers: str) -> dict[str, str]:
    """One HTTP/2 request written by hand; returns the response headers and trailers merged."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    headers = {":method": "POST", ":scheme": "http", ":authority": "gcd.test", ":path": path}
    headers |= {"content-type": "application/grpc", "te": "trailers", **extra_headers}
    received: dict[str, str] = {}
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        connection.initiate_connection()
        connection.send_headers(1, list(headers.items()), end_stream=not body)
        if body:
            connection.send_data(1, body, end_stream=True)
        sock.sendall(connection.data_to_send())
        while True:
            data = sock.recv(65536)
            if not data:
                return received
            for event in connection.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    received |= {str(name): str(value) for name, value in event.headers or []}
                if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    return received
            sock.sendall(connection.data_to_send())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One server for the whole module, so that damage by one case would show in the next."""
    log_dir: Path = tmp_path_factory.mktemp("hostile-grpc")
    with running_server(log_dir) as (port, process):
        yield port
        assert process.poll() is None, "gcd-server died"
        record_figure("hostile gRPC inputs tried", seen["cases"])
        record_figure("gcd-server crashes", 0 if process.poll() is None else 1)


@pytest.fixture(autouse=True)
def still_serving_afterwards(server: int) -> Iterator[None]:
    yield
    seen["cases"] += 1
    assert server_is_serving(server)


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\xff" * 512, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00"],
    ids=["binary noise", "HTTP/1.1", "preface then a truncated frame"],
)
def test_garbage_bytes_close_the_connection(server: int, garbage: bytes) -> None:
    with socket.create_connection((LOOPBACK, server), timeout=5) as sock:
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass


def assert_grpc_error(reply: dict[str, str]) -> None:
    assert reply.get("grpc-status", "0") != "0", reply


@pytest.mark.parametrize(
    "body",
    [
        grpc_frame(b"\x08\x01", declared_length=10),
        grpc_frame(b"\xff\xff\xff"),
        grpc_frame(b"\x08\x01", compressed=True),
        b"\x00\x00",
    ],
    ids=["message shorter than its length", "not protobuf", "compressed without an encoding", "truncated prefix"],
)
def test_malformed_message_gets_a_grpc_error(server: int, body: bytes) -> None:
    assert_grpc_error(h2_call(server, COMPUTE, body))


@pytest.mark.parametrize("timeout", ["abc", "-1S", "1"])
def test_unparsable_deadline_gets_a_grpc_error(server: int, timeout: str) -> None:
    body = grpc_frame(gcd_pb2.ComputeRequest(a=12, b=18).SerializeToString())
    assert_grpc_error(h2_call(server, COMPUTE, body, **{"grpc-timeout": timeout}))


@pytest.mark.parametrize("timeout", ["0n", "99999999H", "1000000000S"])
def test_extreme_deadline_is_honoured(server: int, timeout: str) -> None:
    body = grpc_frame(gcd_pb2.ComputeRequest(a=12, b=18).SerializeToString())
    assert h2_call(server, COMPUTE, body, **{"grpc-timeout": timeout}).get("grpc-status") in {"0", "4"}


def test_unknown_method_is_unimplemented(server: int) -> None:
    assert h2_call(server, f"/{SERVICE_NAME}/Nope", grpc_frame(b"")).get("grpc-status") == "12"


def test_oversized_message_is_resource_exhausted(server: int) -> None:
    with grpc.insecure_channel(f"{LOOPBACK}:{server}") as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(COMPUTE)
        with pytest.raises(grpc.RpcError) as error:
            call(b"\x0a" + b"\xff" * (MAX_RECEIVE_MESSAGE_BYTES + 1), timeout=5)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("size", [20_000, 200_000])
def test_oversized_metadata_gets_an_answer(server: int, size: int) -> None:
    reply = h2_call(server, COMPUTE, grpc_frame(b""), **{"x-big": "v" * size})
    assert "grpc-status" in reply, reply


def test_a_good_call_still_works(server: int) -> None:
    body = grpc_frame(gcd_pb2.ComputeRequest(a=12, b=18).SerializeToString())
    assert h2_call(server, COMPUTE, body).get("grpc-status") == "0"
