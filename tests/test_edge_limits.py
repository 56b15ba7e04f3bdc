"""Limits at the edge and in the server: overload is refused quickly, slow and idle clients do
not starve normal ones, and Envoy and the server agree on keepalive."""

import dataclasses
import threading
import time
from contextlib import suppress
from pathlib import Path

import grpc
import pytest

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_server.app import MAX_CONNECTION_AGE_MS, MIN_CLIENT_PING_INTERVAL_MS
from gcd_stack.envoy_config import (
    cluster,
    connection_limit,
    connection_manager,
    heap_budget,
    http_filter,
    packaged_config,
    resource_monitor,
)
from gcd_stack.ports import Ports
from gcd_testing.ports import free_ports
from gcd_testing.stats import percentile

from clients import assert_rest_reply, http_request, open_connections
from figures import record_figure
from processes import envoy_alone, held_call, local_envoy_config

pytestmark = pytest.mark.faults
# Slow or idle, most of the connections the public listener takes, leaving room for normal ones.
SLOW_CLIENTS = IDLE_CONNECTIONS = connection_limit(packaged_config()) * 3 // 4
SAMPLES = 300
# Generous for a loaded 2-core CI machine; an unloaded request takes about a millisecond.
P99_LIMIT_SECONDS = 0.1


def duration_seconds(text: str) -> float:
    return float(text.removesuffix("s"))


def test_server_at_its_rpc_limit_answers_429_through_envoy(tmp_path: Path) -> None:
    with held_call(b"", max_concurrent_rpcs=1) as held:
        with pytest.raises(grpc.RpcError) as refused:
            gcd_pb2_grpc.GCDServiceStub(held.channel).Compute(gcd_pb2.ComputeRequest(a=1, b=1), timeout=5)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        ports = dataclasses.replace(free_ports(), sidecar=held.port)
        with envoy_alone(local_envoy_config(ports), ports, tmp_path):
            reply = http_request(ports.envoy, "/gcd/12/18")
    assert reply.status == 429
    assert_rest_reply(reply)
    assert reply.json()["code"] == 8


def test_envoy_pings_the_server_no_more_often_than_it_accepts() -> None:
    protocols = cluster(packaged_config())["typed_extension_protocol_options"]
    options = protocols["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    keepalive = options["explicit_http_config"]["http2_protocol_options"]["connection_keepalive"]
    assert duration_seconds(keepalive["interval"]) * 1000 >= MIN_CLIENT_PING_INTERVAL_MS, (
        "envoy/envoy.yaml's connection_keepalive and gcd_server/app.py's MIN_CLIENT_PING_INTERVAL_MS disagree"
    )


def test_envoy_ages_client_connections_as_gcd_server_does() -> None:
    """One age for every connection a client keeps, through Envoy or straight to the server, so
    that a new pod reaches every kind of client alike (docs/deploy.md)."""
    options = connection_manager(packaged_config())["common_http_protocol_options"]
    assert duration_seconds(options["max_connection_duration"]) * 1000 == MAX_CONNECTION_AGE_MS, (
        "envoy/envoy.yaml's max_connection_duration and gcd_server/app.py's MAX_CONNECTION_AGE_MS differ"
    )


def latencies(port: int, count: int = SAMPLES) -> list[float]:
    """Seconds each of count fresh-connection REST requests took, all checked for the answer."""
    samples = []
    for i in range(count):
        started = time.monotonic()
        reply = http_request(port, f"/gcd/{12 * i}/18")
        samples.append(time.monotonic() - started)
        assert reply.status == 200
    return samples


def record_latencies(label: str, samples: list[float]) -> None:
    record_figure(
        f"REST latency {label}, p50 / p99 / max (ms)",
        " / ".join(f"{percentile(samples, q) * 1000:.1f}" for q in (0.5, 0.99, 1.0)),
    )


def test_normal_requests_stay_fast(stack_ports: Ports) -> None:
    samples = latencies(stack_ports.envoy)
    record_latencies("alone", samples)
    assert percentile(samples, 0.99) < P99_LIMIT_SECONDS


def test_slowloris_flood_neither_starves_others_nor_lingers(stack_ports: Ports) -> None:
    timeout = duration_seconds(connection_manager(packaged_config())["request_headers_timeout"])
    stop_dripping = threading.Event()
    with open_connections(stack_ports.envoy, SLOW_CLIENTS, b"GET /gcd/12/18 HTTP/1.1\r\nHost: slow\r\n") as slow:

        def drip() -> None:
            while not stop_dripping.wait(0.5):
                for connection in slow:
                    # Envoy may already have cut this one off.
                    with suppress(OSError):
                        connection.sendall(b"X-Slow: 1\r\n")

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        started = time.monotonic()
        try:
            samples = latencies(stack_ports.envoy)
        finally:
            stop_dripping.set()
            dripper.join()
        record_latencies(f"during a flood of {SLOW_CLIENTS} slow clients", samples)
        assert percentile(samples, 0.99) < P99_LIMIT_SECONDS

        # Each slow client is cut off once request_headers_timeout has passed since it connected.
        time.sleep(max(0.0, timeout + 1 - (time.monotonic() - started)))
        cut_off = sum(1 for connection in slow if b" 408 " in connection.recv(4096).split(b"\r\n")[0])
    record_figure(f"slow clients cut off after {timeout:.0f} s (HTTP 408)", f"{cut_off} of {SLOW_CLIENTS}")
    assert cut_off == SLOW_CLIENTS


def test_burst_of_idle_connections_does_not_starve_others(stack_ports: Ports) -> None:
    with open_connections(stack_ports.envoy, IDLE_CONNECTIONS):
        samples = latencies(stack_ports.envoy)
    record_latencies(f"beside {IDLE_CONNECTIONS} idle connections", samples)
    assert percentile(samples, 0.99) < P99_LIMIT_SECONDS


def test_connection_limit_and_heap_limit_are_set() -> None:
    config = packaged_config()
    connections = resource_monitor(config, "envoy.resource_monitors.global_downstream_max_connections")
    assert connection_limit(config) < connections["max_active_downstream_connections"]
    heap = heap_budget(config)
    assert heap <= 64 * 2**20, "Envoy's heap must stay well under the pod's 128 MiB memory limit"
    assert http_filter(config, "envoy.filters.http.grpc_json_transcoder")["max_request_body_size"] <= 4096
