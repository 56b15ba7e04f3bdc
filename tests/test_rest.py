"""REST/JSON through the real Envoy and its transcoder, end to end, on a running gcd-stack."""

import json

import pytest

from gcd_stack.envoy_config import openapi_path
from gcd_stack.ports import Ports

from clients import assert_rest_reply, http_request, http_request_bytes, raw_exchange, raw_http
from processes import HEALTH_PATH

UINT64_MAX = 2**64 - 1


@pytest.mark.parametrize(
    ("path", "result"),
    [
        ("/gcd/12/18", "6"),
        ("/gcd/18/12", "6"),
        ("/gcd/0/0", "0"),
        ("/gcd/0/5", "5"),
        (f"/gcd/{UINT64_MAX}/{UINT64_MAX}", str(UINT64_MAX)),
        (f"/gcd/{UINT64_MAX}/{UINT64_MAX - 1}", "1"),
        ("/gcd/%31%32/18", "6"),
        ("/gcd/012/18", "6"),
        # Query strings are ignored, as the original gateway did: they never replace a or b.
        ("/gcd/12/18?a=5", "6"),
        ("/gcd/12/18?b=5&a=7", "6"),
        ("/gcd/12/18?foo=1", "6"),
    ],
)
def test_gcd(stack_ports: Ports, path: str, result: str) -> None:
    reply = http_request(stack_ports.envoy, path)
    assert reply.status == 200
    assert_rest_reply(reply)
    assert reply.json() == {"result": result}
    assert reply.body == b'{"result":"%s"}' % result.encode()


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        ("/gcd/abc/18", 3, 'a: invalid value "abc" for type TYPE_UINT64'),
        ("/gcd/12/-1", 3, 'b: invalid value "-1" for type TYPE_UINT64'),
        ("/gcd/1.5/2", 3, 'a: invalid value "1.5"'),
        ("/gcd/0x10/2", 3, 'a: invalid value "0x10"'),
        (f"/gcd/{UINT64_MAX + 1}/1", 3, f'a: invalid value "{UINT64_MAX + 1}"'),
        ("/gcd//18", 3, 'a: invalid value ""'),
        # Slashes are not merged, and an escaped one stays in its segment (envoy/envoy.yaml).
        ("/gcd/12%2F18/6", 3, 'a: invalid value "12/18"'),
    ],
)
def test_bad_operand_is_400_naming_the_parameter(stack_ports: Ports, path: str, code: int, message: str) -> None:
    reply = http_request(stack_ports.envoy, path)
    assert reply.status == 400
    assert_rest_reply(reply)
    assert reply.json()["code"] == code
    assert message in reply.json()["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/gcd/12"),
        ("GET", "/gcd/12/18/1"),
        ("GET", "/"),
        ("GET", "/foo"),
        ("POST", "/foo"),
    ],
)
def test_unknown_path_is_404(stack_ports: Ports, method: str, path: str) -> None:
    reply = http_request(stack_ports.envoy, path, method=method)
    assert reply.status == 404
    assert_rest_reply(reply)
    assert reply.json() == {"code": 5, "message": f"Could not resolve {path} to a method."}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/gcd/12/18", "/gcd/12/18/", "/openapi.json", "/docs", "/docs/docs.js"])
def test_another_method_on_a_read_only_path_is_405_with_allow(stack_ports: Ports, method: str, path: str) -> None:
    reply = http_request(stack_ports.envoy, path, method=method)
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"
    assert_rest_reply(reply)
    assert reply.json() == {"code": 12, "message": "this path answers GET and HEAD only"}


# Envoy closes the connection after the 400 of a bad operand; every other answer keeps it open.
@pytest.mark.parametrize(
    ("path", "kept_open"),
    [("/gcd/12/18", True), ("/gcd/1/2/3", True), ("/openapi.json", True), ("/docs", True), ("/gcd/abc/18", False)],
)
def test_head_leaves_the_connection_ready_for_the_next_response(stack_ports: Ports, path: str, kept_open: bool) -> None:
    """No byte of a body follows a HEAD answer, so the next answer on the connection starts clean
    (http.client never reads past a HEAD answer's headers: these are the raw bytes)."""
    pipelined = http_request_bytes("HEAD", path) + http_request_bytes("GET", "/gcd/1/1", {"connection": "close"})
    head_answer, _, rest = raw_exchange(stack_ports.envoy, pipelined).partition(b"\r\n\r\n")
    assert head_answer.startswith(b"HTTP/1.1 ")
    if kept_open:
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b'{"result":"1"}'), rest[:100]
    else:
        assert b"connection: close" in head_answer.lower() and rest == b""


@pytest.mark.parametrize("path", ["/gcd/12/18", "/gcd/abc/18", "/openapi.json", "/docs"])
def test_head_answers_with_the_status_and_headers_of_get(stack_ports: Ports, path: str) -> None:
    get = http_request(stack_ports.envoy, path)
    head = http_request(stack_ports.envoy, path, method="HEAD")
    assert head.status == get.status
    assert head.headers["content-type"] == get.headers["content-type"]
    assert int(head.headers["content-length"]) == len(get.body)


def test_a_body_cannot_replace_the_operands(stack_ports: Ports) -> None:
    reply = http_request(stack_ports.envoy, "/gcd/12/18", headers={"content-type": "application/json"}, body=b'{"a":5}')
    assert reply.status == 400
    assert_rest_reply(reply)
    assert reply.json()["code"] == 3
    assert "conflicting" in reply.json()["message"]


def test_a_body_that_is_not_json_is_400(stack_ports: Ports) -> None:
    reply = http_request(stack_ports.envoy, "/gcd/12/18", body=b"hello")
    assert reply.status == 400
    assert_rest_reply(reply)
    assert reply.json()["code"] == 3


def test_an_oversized_body_is_refused(stack_ports: Ports) -> None:
    reply = http_request(stack_ports.envoy, "/gcd/12/18", body=b" " * 100_000)
    assert 400 <= reply.status < 500
    assert_rest_reply(reply)
    assert reply.json()["code"] == 3


@pytest.mark.parametrize(
    "headers",
    [{"x-big": "v" * 70_000}, {f"x-header-{i}": "v" for i in range(300)}],
    ids=["one-70kB-header", "300-headers"],
)
def test_oversized_headers_are_431(stack_ports: Ports, headers: dict[str, str]) -> None:
    reply = http_request(stack_ports.envoy, "/gcd/12/18", headers=headers)
    assert reply.status == 431
    assert_rest_reply(reply)
    assert reply.json()["code"] == 3


def test_a_70_kb_url_is_431(stack_ports: Ports) -> None:
    reply = http_request(stack_ports.envoy, "/gcd/12/" + "1" * 70_000)
    assert reply.status == 431
    assert_rest_reply(reply)


def test_health_path_is_200_while_the_server_serves(stack_ports: Ports) -> None:
    assert http_request(stack_ports.envoy_probes, HEALTH_PATH).status == 200


def test_the_health_path_is_not_on_the_public_port(stack_ports: Ports) -> None:
    """It is kubelet's, on the listener a flood of the public port cannot exhaust."""
    reply = http_request(stack_ports.envoy, HEALTH_PATH)
    assert reply.status == 404 and reply.json()["code"] == 5


def test_envoy_serves_the_generated_openapi_document(stack_ports: Ports) -> None:
    reply = http_request(stack_ports.envoy, "/openapi.json")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == json.loads(openapi_path().read_text())


def test_an_unknown_transfer_encoding_is_the_clients_mistake(stack_ports: Ports) -> None:
    """Envoy's HTTP/1 codec answers it 501; a mapper makes it the 400 it is."""
    request = http_request_bytes("POST", "/gcd/12/18", {"Transfer-Encoding": "xchunked"})
    reply = raw_http(stack_ports.envoy, request)
    assert reply.status == 400
    assert_rest_reply(reply)
    assert reply.json()["code"] == 3
