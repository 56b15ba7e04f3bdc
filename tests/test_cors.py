"""CORS on Envoy's port, for REST and gRPC-Web: preflights answered by Envoy's CORS filter, the
allowed origins read from GCD_CORS_ALLOWED_ORIGINS (none by default, every one for "*"), and
only on the API's own routes."""

from collections.abc import Iterator

import pytest

from gcd_stack.envoy_config import (
    CORS_ORIGINS_VARIABLE,
    cors_policy,
    cors_routes,
    packaged_config,
)
from gcd_stack.ports import Ports

from clients import COMPUTE, Reply, http_request, preflight_headers
from processes import running_stack

ALLOWED = "http://dashboard.pi.test"
ALSO_ALLOWED = "http://localhost:3001"
REST = "/gcd/12/18"


def preflight(port: int, path: str, origin: str, method: str = "GET", headers: str = "") -> Reply:
    return http_request(port, path, method="OPTIONS", headers=preflight_headers(origin, method, headers))


@pytest.fixture(scope="module")
def everyone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    """A gcd-stack whose Envoy allows every origin."""
    with running_stack(tmp_path_factory.mktemp("everyone"), {CORS_ORIGINS_VARIABLE: "*"}) as (ports, _):
        yield ports


@pytest.fixture(scope="module")
def narrowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ports]:
    """A gcd-stack whose Envoy allows two origins only."""
    env = {CORS_ORIGINS_VARIABLE: f"{ALLOWED}  {ALSO_ALLOWED}"}
    with running_stack(tmp_path_factory.mktemp("narrowed"), env) as (ports, _):
        yield ports


def test_the_variable_is_the_one_envoys_matcher_reads() -> None:
    (matcher,) = cors_policy(packaged_config())["allow_origin_string_match"]
    source = matcher["custom"]["typed_config"]["source_code"]["inline_string"]
    assert f'os.getenv("{CORS_ORIGINS_VARIABLE}") or ""' in source


def test_cors_is_on_the_apis_routes_alone_with_one_policy() -> None:
    """REST (GET and HEAD) and gRPC-Web for gcd.v1.GCDService; never health, reflection or files."""
    policies = cors_routes(packaged_config())
    assert set(policies) == {"rest", "rest_not_get", "grpc_web", "preflight"}
    assert all(policy == cors_policy(packaged_config()) for policy in policies.values())


@pytest.mark.parametrize("path", [REST, COMPUTE])
def test_by_default_no_origin_is_allowed(stack_ports: Ports, path: str) -> None:
    """A page that a browser on the LAN opens cannot read the API's answers, nor send it gRPC-Web
    (which needs a preflight)."""
    refused = preflight(stack_ports.envoy, path, "https://anywhere.example", "POST", "content-type,x-grpc-web")
    assert "access-control-allow-origin" not in refused.headers
    simple = http_request(stack_ports.envoy, REST, headers={"origin": "https://anywhere.example"})
    assert simple.json() == {"result": "6"}
    assert "access-control-allow-origin" not in simple.headers


@pytest.mark.parametrize("path", [REST, "/gcd/abc/18", COMPUTE])
def test_with_a_star_a_preflight_from_any_origin_is_answered(everyone: Ports, path: str) -> None:
    reply = preflight(everyone.envoy, path, "https://anywhere.example", "POST", "content-type,x-grpc-web")
    assert (reply.status, reply.body) == (200, b"")
    assert reply.headers["access-control-allow-origin"] == "https://anywhere.example"
    assert reply.headers["access-control-allow-methods"] == "GET, HEAD, POST"
    assert {"content-type", "x-grpc-web"} <= set(reply.headers["access-control-allow-headers"].split(", "))
    assert reply.headers["access-control-max-age"] == "7200"
    assert "access-control-allow-credentials" not in reply.headers


def test_a_cross_origin_get_is_answered_with_the_origin_allowed(everyone: Ports) -> None:
    reply = http_request(everyone.envoy, REST, headers={"origin": "https://anywhere.example"})
    assert reply.json() == {"result": "6"}
    assert reply.headers["access-control-allow-origin"] == "https://anywhere.example"
    assert reply.headers["vary"] == "origin"


def test_an_error_reaches_a_cross_origin_page_readable(everyone: Ports) -> None:
    reply = http_request(everyone.envoy, "/gcd/abc/18", headers={"origin": "https://anywhere.example"})
    assert reply.status == 400 and reply.json()["code"] == 3
    assert reply.headers["access-control-allow-origin"] == "https://anywhere.example"


@pytest.mark.parametrize("origin", [ALLOWED, ALSO_ALLOWED])
def test_a_listed_origin_is_allowed(narrowed: Ports, origin: str) -> None:
    ports = narrowed
    assert preflight(ports.envoy, REST, origin).headers["access-control-allow-origin"] == origin
    simple = http_request(ports.envoy, REST, headers={"origin": origin})
    assert simple.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize("origin", ["http://evil.test", ALLOWED + ".evil.test", "null", "*"])
def test_an_origin_not_listed_is_refused(narrowed: Ports, origin: str) -> None:
    ports = narrowed
    refused = preflight(ports.envoy, REST, origin)
    # Envoy answers the preflight itself, without allowing the origin: the browser stops there.
    assert refused.status == 200
    assert "access-control-allow-origin" not in refused.headers
    simple = http_request(ports.envoy, REST, headers={"origin": origin})
    assert simple.json() == {"result": "6"}
    assert "access-control-allow-origin" not in simple.headers


def test_without_an_origin_nothing_changes(narrowed: Ports) -> None:
    ports = narrowed
    reply = http_request(ports.envoy, REST)
    assert reply.json() == {"result": "6"}
    assert not [name for name in reply.headers if name.startswith("access-control-")]


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_a_preflight_for_the_files_is_refused(narrowed: Ports, path: str) -> None:
    refused = preflight(narrowed.envoy, path, ALLOWED)
    assert "access-control-allow-origin" not in refused.headers
    assert refused.status == 405


@pytest.mark.parametrize("path", ["/nope", "/gcd/12"])
def test_a_preflight_for_a_path_the_api_lacks_lets_the_page_read_the_404(narrowed: Ports, path: str) -> None:
    """Every path not otherwise answered is the REST API's: a page of an allowed origin may
    call it, and reads its 404 (nothing a simple GET would not show it)."""
    assert preflight(narrowed.envoy, path, ALLOWED).headers["access-control-allow-origin"] == ALLOWED
    reply = http_request(narrowed.envoy, path, headers={"origin": ALLOWED})
    assert reply.status == 404 and reply.headers["access-control-allow-origin"] == ALLOWED


@pytest.mark.parametrize(
    "path",
    [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ],
)
def test_cors_never_covers_health_or_reflection(everyone: Ports, path: str) -> None:
    refused = preflight(everyone.envoy, path, ALLOWED, "POST", "content-type,x-grpc-web")
    assert "access-control-allow-origin" not in refused.headers
    assert refused.status == 404
