"""gcd-server as a process and as a library: RPCs, health, reflection, ports and shutdown."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_server.app import SERVICE_NAME, VERSION, drain
from gcd_server.connections import established_connections
from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.processes import server_command
from gcd_testing.ports import free_port
from gcd_testing.proc import anything_listens_on

from clients import open_connections
from processes import held_call, json_lines, messages, running_server, wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def channel(server_port: int) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"{LOOPBACK}:{server_port}") as opened:
        yield opened


def test_compute(channel: grpc.Channel) -> None:
    stub = gcd_pb2_grpc.GCDServiceStub(channel)
    assert stub.Compute(gcd_pb2.ComputeRequest(a=12, b=18), timeout=5).result == 6
    assert stub.Compute(gcd_pb2.ComputeRequest(a=2**64 - 1, b=2**64 - 1), timeout=5).result == 2**64 - 1


@pytest.mark.parametrize("service", ["", SERVICE_NAME])
def test_health_is_serving(channel: grpc.Channel, service: str) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert reply.status == SERVING


def test_health_of_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as error:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="nope.V1"), timeout=5)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_reflection_lists_services_under_both_versions(channel: grpc.Channel, version: str) -> None:
    # v1 and v1alpha share their messages, so the v1alpha classes speak v1 on the wire too.
    info = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    replies = list(info(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
    names = {service.name for service in replies[0].list_services_response.service}
    assert names == {
        SERVICE_NAME,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }


def test_start_line_names_address_and_version(server_port: int, tmp_path: Path) -> None:
    (record,) = json_lines(tmp_path / "server.err")
    assert record["message"].startswith(f"gcd-server {VERSION} serving {SERVICE_NAME} on 127.0.0.1:{server_port}, ")
    assert re.fullmatch(r".*, metrics on port \d+", record["message"])
    assert record["level"] == "INFO" and record["logger"] == "gcd_server"
    assert datetime.fromisoformat(record["time"]).tzinfo is not None


def test_no_log_line_per_request_at_the_default_level(channel: grpc.Channel, tmp_path: Path) -> None:
    before = json_lines(tmp_path / "server.err")
    stub = gcd_pb2_grpc.GCDServiceStub(channel)
    for i in range(50):
        stub.Compute(gcd_pb2.ComputeRequest(a=i, b=6), timeout=5)
    assert json_lines(tmp_path / "server.err") == before


def test_second_server_on_a_busy_port_fails_clearly(server_port: int, tmp_path: Path) -> None:
    second = subprocess.run(server_command(server_port, free_port()), capture_output=True, text=True, timeout=20)
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{server_port}: the port is in use" in second.stderr
    assert "Traceback" not in second.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_server_with_exit_0_and_frees_the_port(signum: signal.Signals, tmp_path: Path) -> None:
    with running_server(tmp_path, "--grace", "2") as (port, process):
        process.send_signal(signum)
        assert process.wait(10) == 0
    said = messages(tmp_path / "server.err")
    assert said[1:] == ["stopping: new RPCs refused, in-flight RPCs get 2.0s to finish", "stopped"]
    assert not anything_listens_on(port)


def test_drain_finishes_in_flight_rpcs_and_refuses_new_ones() -> None:
    with held_call(b"payload") as held:
        draining = threading.Thread(target=drain, args=([held.server], held.health_servicer, 10))
        draining.start()
        time.sleep(0.2)

        status = held.health_servicer.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), None).status
        assert status == NOT_SERVING
        with pytest.raises(grpc.RpcError) as refused:
            gcd_pb2_grpc.GCDServiceStub(held.channel).Compute(gcd_pb2.ComputeRequest(a=1, b=1), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert draining.is_alive()

        held.release.set()
        assert held.in_flight.result(timeout=5) == b"payload"
        draining.join(5)
        assert not draining.is_alive()


def test_drain_gives_up_on_rpcs_that_outlive_the_grace_period() -> None:
    with held_call(b"") as held:
        started = time.monotonic()
        drain([held.server], held.health_servicer, 0.5)
        assert time.monotonic() - started < 3
        assert held.in_flight.exception(timeout=5) is not None


def test_the_clients_of_a_port_are_counted_from_the_kernels_tables() -> None:
    with socket.create_server((LOOPBACK, 0)) as listening:
        port = listening.getsockname()[1]
        with open_connections(port, 3):
            assert established_connections(port) == 3
        wait_until(lambda: established_connections(port) == 0, 5, "connections closed")


def test_drain_serves_the_clients_of_its_port_until_they_have_gone() -> None:
    with held_call(b"payload") as held:
        assert established_connections(held.port) == 1
        draining = threading.Thread(target=drain, args=([held.server], held.health_servicer, 5, None, (held.port, 20)))
        started = time.monotonic()
        draining.start()
        time.sleep(1)
        assert draining.is_alive()
        # Still served meanwhile, on the connection it already has.
        stub = gcd_pb2_grpc.GCDServiceStub(held.channel)
        assert stub.Compute(gcd_pb2.ComputeRequest(a=12, b=18), timeout=5).result == 6
        held.release.set()
        assert held.in_flight.result(timeout=5) == b"payload"
        held.channel.close()
        draining.join(10)
        assert not draining.is_alive()
        assert time.monotonic() - started < 10


def test_drain_does_not_wait_without_clients() -> None:
    with held_call(b"") as held:
        held.release.set()
        held.in_flight.result(timeout=5)
        held.channel.close()
        wait_until(lambda: established_connections(held.port) == 0, 5, "the client gone")
        started = time.monotonic()
        drain([held.server], held.health_servicer, 5, None, (held.port, 20))
        assert time.monotonic() - started < 2
