"""gRPC-Web through Envoy's grpc_web filter, framed by hand as a browser client frames it: the
answer in a data frame, the status in a trailer frame (or, for an error, in the headers)."""

import base64
import re

import pytest

from gcd.v1 import gcd_pb2
from gcd_stack.ports import Ports
from gcd_testing.grpc_frame import GRPC_WEB_TRAILER_FLAG, grpc_frame, grpc_web_frames, grpc_web_trailers

from clients import COMPUTE, GRPC_WEB_BINARY, GRPC_WEB_TEXT, Reply, grpc_web_headers, http_request


def grpc_web_call(port: int, path: str, body: bytes, content_type: str = GRPC_WEB_BINARY) -> Reply:
    if content_type == GRPC_WEB_TEXT:
        body = base64.b64encode(body)
    return http_request(port, path, method="POST", headers=grpc_web_headers(content_type), body=body)


def decode_text(body: bytes) -> bytes:
    """A grpc-web-text answer: Envoy encodes each chunk on its own, padding included."""
    return b"".join(base64.b64decode(chunk) for chunk in re.findall(rb"[A-Za-z0-9+/]+=*", body))


@pytest.mark.parametrize("content_type", [GRPC_WEB_BINARY, GRPC_WEB_TEXT])
def test_compute_answers_in_a_data_frame_then_a_trailer_frame(stack_ports: Ports, content_type: str) -> None:
    request = gcd_pb2.ComputeRequest(a=12, b=18).SerializeToString()
    reply = grpc_web_call(stack_ports.envoy, COMPUTE, grpc_frame(request), content_type)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith(content_type)
    body = decode_text(reply.body) if content_type == GRPC_WEB_TEXT else reply.body
    (data_flag, message), (trailer_flag, trailer_block) = grpc_web_frames(body)
    assert data_flag == 0 and gcd_pb2.ComputeResponse.FromString(message).result == 6
    assert trailer_flag == GRPC_WEB_TRAILER_FLAG
    assert grpc_web_trailers(trailer_block)["grpc-status"] == "0"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/gcd.v1.GCDService/Nope", grpc_frame(b""), "12"),
        # A frame that promises more bytes than it has: the server gets no whole message.
        (COMPUTE, grpc_frame(b"\x08\x0c", declared_length=100), "12"),
        (COMPUTE, grpc_frame(b"\xff\xff\xff"), "13"),
    ],
)
def test_an_error_reaches_the_browser_as_a_grpc_status(stack_ports: Ports, path: str, body: bytes, status: str) -> None:
    reply = grpc_web_call(stack_ports.envoy, path, body)
    assert reply.status == 200
    assert reply.headers["grpc-status"] == status
    assert reply.headers["grpc-message"]


def test_text_that_is_not_base64_is_a_client_error(stack_ports: Ports) -> None:
    reply = http_request(
        stack_ports.envoy, COMPUTE, method="POST", headers={"content-type": GRPC_WEB_TEXT}, body=b"!!!not base64"
    )
    assert reply.status == 400
    assert reply.headers["grpc-message"] == "Bad gRPC-web request, invalid base64 data."
