"""The /docs page as Envoy serves it: static files from the build, each with its content type,
naming nothing outside this origin, under a content-security-policy."""

import re

import pytest

from gcd_stack.envoy_config import file_routes, installed_file, packaged_config
from gcd_stack.ports import Ports

from clients import http_request
from processes import file_content_types

DOCS_ROUTES = {path: route for path, route in file_routes(packaged_config()).items() if path.startswith("/docs")}


def test_every_docs_route_is_a_file_baked_in_by_the_build() -> None:
    assert {"/docs", "/docs/"} <= DOCS_ROUTES.keys()
    for route in DOCS_ROUTES.values():
        assert "route" not in route  # answered by Envoy, never forwarded
        assert installed_file(route["direct_response"]["body"]["filename"]).stat().st_size > 0


def test_the_page_names_only_files_served_here(stack_ports: Ports) -> None:
    content_types = file_content_types(packaged_config())
    page = http_request(stack_ports.envoy, "/docs")
    assert page.status == 200 and page.headers["content-type"] == content_types["/docs"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.body.decode())
    assert assets and all(asset.startswith("/docs/") for asset in assets), assets
    for asset in assets:
        reply = http_request(stack_ports.envoy, asset)
        assert reply.status == 200 and reply.body, asset
        assert reply.headers["content-type"] == content_types[asset], asset
    # What each file is, by its content; the route's content-type must say the same.
    assert page.body.lstrip().lower().startswith(b"<!doctype html>")
    assert http_request(stack_ports.envoy, "/docs/favicon-32x32.png").body.startswith(b"\x89PNG")


@pytest.mark.parametrize("name", ["index.html", "docs.js"])
def test_the_pages_own_files_reach_no_other_host(name: str) -> None:
    text = installed_file(f"/etc/envoy/docs/{name}").read_text()
    assert not re.search(r"https?://|\bsrc=\"//|\bhref=\"//", text), name


@pytest.mark.parametrize("path", ["/docs", "/docs/"])
def test_the_page_may_run_only_what_is_served_here(stack_ports: Ports, path: str) -> None:
    policy = http_request(stack_ports.envoy, path).headers["content-security-policy"]
    directives = dict(item.strip().split(" ", 1) for item in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert "script-src" not in directives  # default-src 'self': no inline script, no other host
    assert directives["frame-ancestors"] == "'none'"


def test_the_package_carries_swagger_uis_licence() -> None:
    for name in ("LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"):
        assert installed_file(f"/etc/envoy/docs/{name}").read_text().strip(), name


@pytest.mark.parametrize("path", [*file_routes(packaged_config()), "/gcd/12/18", "/gcd/abc/18"])
def test_no_browser_may_guess_another_content_type(stack_ports: Ports, path: str) -> None:
    """Every answer of the public port, the files and the API's JSON, says nosniff."""
    assert http_request(stack_ports.envoy, path).headers["x-content-type-options"] == "nosniff"
