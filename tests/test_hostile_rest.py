"""Hostile HTTP input against the real stack, on every route of Envoy's port (REST, CORS
preflights, the /docs page, gRPC-Web): a fixed corpus and Hypothesis-made path segments.

Whatever a client sends: no 5xx, no hang, every REST error a JSON google.rpc.Status body, every
gRPC-Web error a grpc-status, and every 200 the right gcd of the path's operands.
"""

import base64
import math
import re
from collections.abc import Iterator
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gcd_stack.envoy_config import packaged_config
from gcd_stack.ports import Ports
from gcd_testing.grpc_frame import GRPC_WEB_TRAILER_FLAG, grpc_frame, grpc_web_frames, grpc_web_trailers

from build_files import ERRORS
from clients import (
    COMPUTE,
    GRPC_WEB_BINARY,
    GRPC_WEB_TEXT,
    Reply,
    grpc_web_headers,
    http_request_bytes,
    preflight_headers,
    raw_exchange,
    raw_http,
)
from figures import record_figure
from processes import file_content_types

UINT64_MAX = 2**64 - 1
# What Envoy's transcoder parses as a uint64: decimal digits, optionally after a plus sign.
DECIMAL = re.compile(r"\+?[0-9]+")
pytestmark = pytest.mark.faults

ROUTES = ("REST", "CORS preflight", "/docs", "gRPC-Web")
FILE_CONTENT_TYPES = set(file_content_types(packaged_config()).values())
tried = dict.fromkeys(ROUTES, 0)
server_errors = {"5xx": 0}


@pytest.fixture(scope="module", autouse=True)
def figures_of_this_module() -> Iterator[None]:
    """Recorded once the module's last test is done, whichever order the tests ran in."""
    yield
    record_figure(f"hostile HTTP requests tried: {' / '.join(ROUTES)}", " / ".join(map(str, tried.values())))
    record_figure("5xx answers to them", server_errors["5xx"])


def route_of(request: bytes) -> str:
    """Which of Envoy's routes a request is meant for, for the figures."""
    head = request.split(b"\r\n\r\n", 1)[0].lower()
    if head.startswith(b"options ") and b"access-control-request-method:" in head:
        return "CORS preflight"
    if b"content-type: application/grpc-web" in head:
        return "gRPC-Web"
    if re.match(rb"[a-z]+ /docs\b", head):
        return "/docs"
    return "REST"


def get(target: str, **headers: str) -> bytes:
    return http_request_bytes("GET", target, headers)


# Requests that claim to be gRPC get gRPC's answer: HTTP 200 with a non-zero grpc-status, which is
# not one of a server's faults.
GRPC_ERROR = "gRPC error"
SERVER_FAULT_NUMBERS = {ERRORS.code_number(code) for code in ERRORS.SERVER_FAULTS}
# gRPC-Web's answer to a bad call: a non-zero grpc-status, in the headers or the trailer frame.
GRPC_WEB_ERROR = "gRPC-Web error"
# A gRPC-Web answer, whatever its grpc-status. Envoy's grpc_web filter passes a binary body on as
# it is (envoyproxy/envoy source/extensions/filters/http/grpc_web/grpc_web_filter.cc), and to a
# frame whose flag has the trailer bit set grpcio 1.85 answers gcd(0, 0) with status 0.
GRPC_WEB_ANSWER = "gRPC-Web answer"
# A CORS preflight, answered by Envoy itself: 200 and no body.
PREFLIGHT = "preflight answered"
# One of the /docs page's files, or the OpenAPI document.
STATIC = "a static file"


def preflight(path: str, origin: str = "https://page.example", method: str = "GET", asked_headers: str = "") -> bytes:
    return http_request_bytes("OPTIONS", path, preflight_headers(origin, method, asked_headers))


def grpc_web(body: bytes, path: str = COMPUTE, content_type: str = GRPC_WEB_BINARY) -> bytes:
    return http_request_bytes("POST", path, grpc_web_headers(content_type), body)


# (what it is, the bytes sent, the result a 200 must carry, None where only a 4xx is right, or
# GRPC_ERROR)
CORPUS: list[tuple[str, bytes, str | None]] = [
    ("plain", get("/gcd/12/18"), "6"),
    ("overflow by one", get(f"/gcd/{UINT64_MAX + 1}/1"), None),
    ("overflow by far", get("/gcd/" + "9" * 40 + "/1"), None),
    ("exponent", get("/gcd/1e30/1"), None),
    ("negative", get("/gcd/-1/5"), None),
    ("negative zero", get("/gcd/5/-0"), None),
    ("letters", get("/gcd/abc/5"), None),
    ("emoji", get("/gcd/%F0%9F%98%80/5"), None),
    ("null", get("/gcd/null/5"), None),
    ("NaN", get("/gcd/NaN/5"), None),
    ("Infinity", get("/gcd/Infinity/5"), None),
    ("float", get("/gcd/1.5/2"), None),
    ("leading dot", get("/gcd/.5/2"), None),
    ("hex", get("/gcd/0x10/2"), None),
    ("binary", get("/gcd/0b11/2"), None),
    ("leading zeros", get("/gcd/00012/018"), "6"),
    ("percent-encoded digits", get("/gcd/%31%32/18"), "6"),
    ("double-encoded", get("/gcd/%2531/2"), None),
    ("bare percent", get("/gcd/%/2"), None),
    ("bad escape", get("/gcd/%zz/2"), None),
    ("encoded NUL", get("/gcd/%00/2"), None),
    ("encoded slash", get("/gcd/1%2F2/3"), None),
    ("encoded space", get("/gcd/%201/2"), None),
    ("fullwidth digits", get("/gcd/%EF%BC%91%EF%BC%92/18"), None),
    ("empty operands", get("/gcd//"), None),
    ("one operand", get("/gcd/1"), None),
    ("trailing slash", get("/gcd/12/18/"), "6"),
    ("extra segment", get("/gcd/1/2/3"), None),
    ("no operands", get("/gcd"), None),
    ("double slash inside", get("/gcd/1//2"), None),
    ("leading double slash", get("//gcd/1/2"), None),
    ("dot segments", get("/gcd/../gcd/12/18"), "6"),
    ("dot segment inside", get("/gcd/12/./18"), "6"),
    # Path normalization turns backslashes into slashes, as browsers do.
    ("backslashes", get("/gcd\\12\\18"), "6"),
    ("root", get("/"), None),
    ("admin stats through the public port", get("/stats"), None),
    ("admin config_dump through the public port", get("/config_dump"), None),
    ("admin healthcheck/fail through the public port", http_request_bytes("POST", "/healthcheck/fail"), None),
    ("gRPC path as REST", get(COMPUTE), None),
    ("health path as REST", get("/grpc.health.v1.Health/Check"), None),
    *((f"method {m}", http_request_bytes(m, "/gcd/12/18"), None) for m in ("POST", "PUT", "DELETE", "PATCH")),
    *((f"method {m}", http_request_bytes(m, "/gcd/12/18"), None) for m in ("OPTIONS", "TRACE", "FOO")),
    ("query overriding a", get("/gcd/12/18?a=5"), "6"),
    ("query overriding both", get("/gcd/12/18?a=5&b=7"), "6"),
    ("query with junk", get("/gcd/12/18?a=abc&b=-1"), "6"),
    ("repeated query", get("/gcd/12/18?a=5&a=6"), "6"),
    ("bad escape in query", get("/gcd/12/18?%zz=1"), "6"),
    ("array-style query", get("/gcd/12/18?a[]=1"), "6"),
    # Envoy takes 16 KiB of headers, the URL included (envoy/envoy.yaml).
    ("12 kB query", get("/gcd/12/18?x=" + "y" * 12_000), "6"),
    ("20 kB query", get("/gcd/12/18?x=" + "y" * 20_000), None),
    ("70 kB URL", get("/gcd/12/" + "1" * 70_000), None),
    ("70 kB query", get("/gcd/12/18?x=" + "y" * 70_000), None),
    ("300 headers", http_request_bytes("GET", "/gcd/12/18", {f"x-h{i}": "v" for i in range(300)}), None),
    ("70 kB header", get("/gcd/12/18", **{"x-big": "v" * 70_000}), None),
    ("header with underscores", get("/gcd/12/18", **{"x_forwarded_for": "1.2.3.4"}), "6"),
    ("spoofed forwarding headers", get("/gcd/12/18", **{"x-forwarded-for": "10.0.0.1", "forwarded": "x"}), "6"),
    ("JSON body on GET contradicting a", http_request_bytes("GET", "/gcd/12/18", body=b'{"a":5}'), None),
    ("JSON body on GET agreeing", http_request_bytes("GET", "/gcd/12/18", body=b'{"a":"12"}'), "6"),
    ("JSON body of the wrong type", http_request_bytes("GET", "/gcd/12/18", body=b'{"a":"x"}'), None),
    ("JSON array body", http_request_bytes("GET", "/gcd/12/18", body=b"[1,2]"), None),
    ("non-JSON body", http_request_bytes("GET", "/gcd/12/18", body=b"hello"), None),
    ("5 kB body", http_request_bytes("GET", "/gcd/12/18", body=b" " * 5_000), None),
    ("gRPC content-type over HTTP/1.1", get("/gcd/12/18", **{"content-type": "application/grpc"}), GRPC_ERROR),
    (
        "gRPC content-type on the gRPC path",
        get("/gcd.v1.GCDService/Compute", **{"content-type": "application/grpc"}),
        GRPC_ERROR,
    ),
    (
        "gRPC POST on the gRPC path over HTTP/1.1",
        http_request_bytes("POST", "/gcd.v1.GCDService/Compute", {"content-type": "application/grpc"}),
        GRPC_ERROR,
    ),
    (
        "gRPC HEAD on the gRPC path",
        http_request_bytes("HEAD", "/gcd.v1.GCDService/Compute", {"content-type": "application/grpc"}),
        GRPC_ERROR,
    ),
    ("GET with a gRPC-Web content-type", get("/gcd/12/18", **{"content-type": "application/grpc-web"}), GRPC_WEB_ERROR),
    ("preflight", preflight("/gcd/12/18"), PREFLIGHT),
    ("preflight of an error", preflight("/gcd/abc/18"), PREFLIGHT),
    (
        "preflight for gRPC-Web",
        preflight(COMPUTE, method="POST", asked_headers="x-grpc-web"),
        PREFLIGHT,
    ),
    ("preflight asking for DELETE", preflight("/gcd/12/18", method="DELETE"), PREFLIGHT),
    (
        "preflight asking for 200 headers",
        preflight("/gcd/12/18", asked_headers=",".join(f"x-{i}" for i in range(200))),
        PREFLIGHT,
    ),
    ("preflight from origin null", preflight("/gcd/12/18", origin="null"), PREFLIGHT),
    ("preflight from an 8 kB origin", preflight("/gcd/12/18", origin="https://" + "a" * 8000), PREFLIGHT),
    ("preflight from an empty origin", preflight("/gcd/12/18", origin=""), None),
    (
        "preflight from a non-ASCII origin",
        b"OPTIONS /gcd/12/18 HTTP/1.1\r\nHost: x\r\nOrigin: http://\xc3\xa9.example\r\n"
        b"Access-Control-Request-Method: GET\r\n\r\n",
        PREFLIGHT,
    ),
    # Answered as for the API's paths (the call itself then gets a 404); the files' are refused.
    ("preflight to an unknown path", preflight("/nowhere"), PREFLIGHT),
    ("preflight to the docs page", preflight("/docs"), None),
    (
        "a file asked for as gRPC-Web",
        http_request_bytes("GET", "/docs/swagger-ui.css", {"content-type": "application/grpc-web"}),
        GRPC_WEB_ERROR,
    ),
    ("a file asked for as gRPC", http_request_bytes("GET", "/docs", {"content-type": "application/grpc"}), GRPC_ERROR),
    (
        "two Origin headers",
        b"GET /gcd/12/18 HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\nOrigin: http://b.example\r\n\r\n",
        "6",
    ),
    ("docs", get("/docs"), STATIC),
    ("docs with a query", get("/docs/docs.js?v=1"), STATIC),
    ("docs with a body", http_request_bytes("GET", "/docs", body=b"x" * 100), STATIC),
    ("docs dot segments to the OpenAPI document", get("/docs/../openapi.json"), STATIC),
    ("docs traversal", get("/docs/../../etc/passwd"), None),
    ("docs encoded traversal", get("/docs/%2e%2e/%2e%2e/etc/passwd"), None),
    ("docs encoded-slash traversal", get("/docs/..%2f..%2fetc%2fpasswd"), None),
    ("docs file not served", get("/docs/index.html"), None),
    ("docs source map", get("/docs/swagger-ui-bundle.js.map"), None),
    ("docs in capitals", get("/DOCS"), None),
    ("docs by POST", http_request_bytes("POST", "/docs", body=b"x"), None),
    ("gRPC-Web garbage", grpc_web(b"\xff" * 10), GRPC_WEB_ANSWER),
    ("gRPC-Web empty body", grpc_web(b""), GRPC_WEB_ERROR),
    ("gRPC-Web frame claiming 4 GiB", grpc_web(grpc_frame(b"\x08\x01", declared_length=2**32 - 1)), GRPC_WEB_ERROR),
    ("gRPC-Web trailer frame from the client", grpc_web(b"\x80" + grpc_frame(b"grpc-status:0")[1:]), GRPC_WEB_ANSWER),
    ("gRPC-Web compressed flag, no encoding", grpc_web(grpc_frame(b"\x08\x01", compressed=True)), GRPC_WEB_ERROR),
    ("gRPC-Web undecodable message", grpc_web(grpc_frame(b"\xff\xff\xff")), GRPC_WEB_ERROR),
    ("gRPC-Web 5 kB message", grpc_web(grpc_frame(b"\x0a" + b"\x80" * 5000)), GRPC_WEB_ERROR),
    ("gRPC-Web to an unknown method", grpc_web(grpc_frame(b""), "/gcd.v1.GCDService/Nope"), GRPC_WEB_ERROR),
    ("gRPC-Web on the REST path", grpc_web(grpc_frame(b""), "/gcd/12/18"), GRPC_WEB_ERROR),
    ("gRPC-Web text, not base64", grpc_web(b"!!!", content_type=GRPC_WEB_TEXT), GRPC_WEB_ERROR),
    (
        "gRPC-Web text, truncated base64",
        grpc_web(base64.b64encode(grpc_frame(b"\x08\x0c\x10\x12"))[:-3], content_type=GRPC_WEB_TEXT),
        GRPC_WEB_ERROR,
    ),
    ("HTTP/1.0", http_request_bytes("GET", "/gcd/12/18", version="HTTP/1.0"), "6"),
    ("HTTP/1.0 without Host", b"GET /gcd/12/18 HTTP/1.0\r\n\r\n", "6"),
    ("unknown HTTP version", http_request_bytes("GET", "/gcd/12/18", version="HTTP/9.9"), "6"),
    ("absolute-form target", get("http://elsewhere.example/gcd/12/18"), "6"),
    ("garbage request line", b"GARBAGE\r\n\r\n", None),
    ("space in target", b"GET /gcd/1 2 HTTP/1.1\r\nHost: x\r\n\r\n", None),
    ("NUL in target", b"GET /gcd/1\x002/3 HTTP/1.1\r\nHost: x\r\n\r\n", None),
    ("raw UTF-8 in target", "GET /gcd/\uff11\uff12/18 HTTP/1.1\r\nHost: x\r\n\r\n".encode(), None),
    ("bare LF line endings", b"GET /gcd/12/18 HTTP/1.1\nHost: x\n\n", "6"),
    ("header without colon", b"GET /gcd/12/18 HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n", None),
    ("no Host header", b"GET /gcd/12/18 HTTP/1.1\r\n\r\n", None),
    ("folded header", b"GET /gcd/12/18 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", "6"),
    (
        "content-length and chunked together",
        b"GET /gcd/12/18 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        None,
    ),
    (
        "two content-lengths",
        b"GET /gcd/12/18 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        None,
    ),
]


def check(reply: Reply, expected_result: str | None, route: str = "REST", method: str = "GET") -> None:
    tried[route] += 1
    if reply.status >= 500:
        server_errors["5xx"] += 1
    assert reply.status < 500, (reply.status, reply.body[:200])
    if expected_result == GRPC_ERROR:
        assert reply.status == 200 and reply.headers["grpc-status"] != "0", reply.headers
        # A client's mistake: never a code that says the server failed (proto/errors.py).
        assert int(reply.headers["grpc-status"]) not in SERVER_FAULT_NUMBERS, reply.headers
        return
    if expected_result in (GRPC_WEB_ERROR, GRPC_WEB_ANSWER):
        status = reply.headers.get("grpc-status")
        if status is None:
            *_, (flag, trailers) = grpc_web_frames(reply.body)
            status = grpc_web_trailers(trailers)["grpc-status"] if flag == GRPC_WEB_TRAILER_FLAG else None
        assert status is not None and (expected_result == GRPC_WEB_ANSWER or status != "0"), (reply, status)
        return
    if expected_result == PREFLIGHT:
        assert (reply.status, reply.body) == (200, b""), (reply.status, reply.body[:200])
        assert reply.headers["access-control-allow-methods"]
        return
    if expected_result == STATIC:
        assert reply.status == 200 and reply.body, (reply.status, reply.body[:200])
        assert reply.headers["content-type"] in FILE_CONTENT_TYPES
        return
    if expected_result is not None:
        assert reply.status == 200, (reply.status, reply.body[:200])
        assert reply.body == b'{"result":"%s"}' % expected_result.encode()
        return
    assert 400 <= reply.status < 500, (reply.status, reply.body[:200])
    if method != "HEAD":
        assert reply.headers["content-type"] == "application/json"
        error = reply.json()
        assert isinstance(error["code"], int) and error["code"] > 0
        assert isinstance(error["message"], str)


@pytest.mark.parametrize(("request_bytes", "expected_result"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_hostile_request(stack_ports: Ports, request_bytes: bytes, expected_result: str | None) -> None:
    check(raw_http(stack_ports.envoy, request_bytes), expected_result, route_of(request_bytes))


@pytest.mark.parametrize("path", ["/gcd/abc/18", "/gcd/1/2/3", "/docs/nowhere", "/docs/../nowhere"])
def test_a_bad_head_request_is_a_4xx_without_a_body(stack_ports: Ports, path: str) -> None:
    request = http_request_bytes("HEAD", path, {"connection": "close"})
    check(raw_http(stack_ports.envoy, request), None, route_of(request), method="HEAD")
    # Nothing after the headers (http.client would not read it: the raw bytes do).
    received = raw_exchange(stack_ports.envoy, request)
    assert received.endswith(b"\r\n\r\n") and received.count(b"HTTP/1.1 ") == 1, received


operands = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.from_regex(r"[0-9]{0,25}", fullmatch=True),
    st.text(max_size=24),
    st.sampled_from(["", "0", "-0", "+5", " 5", "5 ", "1e3", "0x1f", "١٢", "NaN", "%", "..", "."]),
)


def expected_gcd(a: str, b: str) -> str | None:
    """The result a 200 must carry, or None where a/b are not both decimal uint64s."""
    if not (DECIMAL.fullmatch(a) and DECIMAL.fullmatch(b) and int(a) <= UINT64_MAX and int(b) <= UINT64_MAX):
        return None
    return str(math.gcd(int(a), int(b)))


# stack_ports is the shared stack's, the same for every example: not being reset is the point.
@settings(
    max_examples=2500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(a=operands, b=operands)
def test_any_path_segments(stack_ports: Ports, a: str, b: str) -> None:
    target = f"/gcd/{quote(a, safe='')}/{quote(b, safe='')}"
    reply = raw_http(stack_ports.envoy, get(target))
    decoded = unquote(target.split("/")[2]), unquote(target.split("/")[3])
    check(reply, expected_gcd(*decoded))
