"""Prometheus metrics: Envoy's statistics on their own port, the server's RPC metrics on its
own, both rising with traffic, and nothing of Envoy's admin API reachable through them."""

import urllib.error
import urllib.request

import grpc
import pytest

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_server.app import SERVICE_NAME
from gcd_server.metrics import UNKNOWN_METHOD
from gcd_stack.envoy_config import LOOPBACK, packaged_config, stat_prefix
from gcd_stack.ports import Ports

from clients import handled, http_request, scrape
from processes import HEALTH_PATH

CALLS = 20
# Enough to show growth: each name would be a label set of its own.
MADE_UP_METHODS = 200


def test_server_counts_rpcs_by_method_and_code(stack_ports: Ports) -> None:
    before = scrape(stack_ports.metrics, "/metrics")
    for i in range(CALLS):
        assert http_request(stack_ports.envoy, f"/gcd/{i}/12").status == 200
    with grpc.insecure_channel(f"{LOOPBACK}:{stack_ports.grpc}") as channel:
        gcd_pb2_grpc.GCDServiceStub(channel).Compute(gcd_pb2.ComputeRequest(a=1, b=2), timeout=5)
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{SERVICE_NAME}/Nope")
        with pytest.raises(grpc.RpcError):
            call(b"", timeout=5)
    after = scrape(stack_ports.metrics, "/metrics")

    assert handled(after, "Compute", "OK") - handled(before, "Compute", "OK") == CALLS + 1
    unknown = UNKNOWN_METHOD, "UNIMPLEMENTED", UNKNOWN_METHOD
    assert handled(after, *unknown) - handled(before, *unknown) == 1
    assert handled(after, "Nope", "UNIMPLEMENTED") == 0
    latency = frozenset({"grpc_type": "unary", "grpc_service": SERVICE_NAME, "grpc_method": "Compute"}.items())
    count = "grpc_server_handling_seconds_count"
    assert after[(count, latency)] - before.get((count, latency), 0.0) == CALLS + 1
    assert any(name == "process_resident_memory_bytes" for name, _ in after)


def test_envoy_statistics_rise_with_requests(stack_ports: Ports) -> None:
    requests = (
        "envoy_http_downstream_rq_total",
        frozenset({("envoy_http_conn_manager_prefix", stat_prefix(packaged_config()))}),
    )
    before = scrape(stack_ports.envoy_metrics, "/stats/prometheus")[requests]
    for i in range(CALLS):
        assert http_request(stack_ports.envoy, f"/gcd/{i}/18").status == 200
    assert scrape(stack_ports.envoy_metrics, "/stats/prometheus")[requests] - before >= CALLS


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/stats"), ("GET", "/config_dump"), ("POST", "/healthcheck/fail")]
)
def test_the_metrics_port_serves_nothing_else_of_the_admin_api(stack_ports: Ports, method: str, path: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(
            urllib.request.Request(f"http://{LOOPBACK}:{stack_ports.envoy_metrics}{path}", method=method)
        )
    assert refused.value.code == 404
    assert http_request(stack_ports.envoy_probes, HEALTH_PATH).status == 200


def test_made_up_method_names_do_not_grow_the_servers_metrics(stack_ports: Ports) -> None:
    """Through the public port, as anyone on the LAN can send them: one label set for them all."""
    with grpc.insecure_channel(f"{LOOPBACK}:{stack_ports.envoy}") as channel:
        for i in range(2 * MADE_UP_METHODS):
            if i == MADE_UP_METHODS:
                before = scrape(stack_ports.metrics, "/metrics")
            call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{SERVICE_NAME}/Made{i}Up")
            with pytest.raises(grpc.RpcError) as refused:
                call(b"", timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    after = scrape(stack_ports.metrics, "/metrics")
    handled_series = {labels for name, labels in after if name == "grpc_server_handled_total"}
    assert handled_series == {labels for name, labels in before if name == "grpc_server_handled_total"}


@pytest.mark.parametrize("method", ["POST", "DELETE", "FOO"])
def test_another_method_on_the_servers_metrics_port_is_405(stack_ports: Ports, method: str) -> None:
    """A client's mistake, not a 501 (http.server's answer to a method it does not serve)."""
    assert http_request(stack_ports.metrics, "/metrics", method=method).status == 405
