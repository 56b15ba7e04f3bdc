"""What REST clients get from Envoy when gcd-server is down or does not answer."""

import socket
from pathlib import Path

import grpc
import pytest

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_stack.envoy_config import LOOPBACK
from gcd_testing.ports import free_ports

from clients import assert_rest_reply, http_request
from processes import HEALTH_PATH, envoy_alone, forwarding_routes, local_envoy_config


def test_server_down_is_a_fast_json_503_with_code_14(tmp_path: Path) -> None:
    ports = free_ports()
    with envoy_alone(local_envoy_config(ports), ports, tmp_path):
        reply = http_request(ports.envoy, "/gcd/12/18")
        assert reply.status == 503
        assert_rest_reply(reply)
        assert reply.json()["code"] == 14
        assert "upstream connect error" in reply.json()["message"]

        # The readiness path is kubelet's, on a listener of its own: a plain 503.
        assert http_request(ports.envoy_probes, HEALTH_PATH).status == 503


def test_a_server_that_never_answers_is_a_json_504_with_code_4(tmp_path: Path) -> None:
    ports = free_ports()
    config = local_envoy_config(ports)
    # The shipped route timeout, shortened so the test need not wait it out.
    for route in forwarding_routes(config):
        route["route"]["timeout"] = "0.5s"
    with socket.socket() as silent_server, envoy_alone(config, ports, tmp_path):
        # Connections complete in the kernel's backlog and are never read from.
        silent_server.bind((LOOPBACK, ports.sidecar))
        silent_server.listen()
        reply = http_request(ports.envoy, "/gcd/12/18")
    assert reply.status == 504
    assert_rest_reply(reply)
    assert reply.json() == {"code": 4, "message": "upstream request timeout"}


def test_grpc_clients_get_envoy_errors_as_plain_grpc_status(tmp_path: Path) -> None:
    ports = free_ports()
    with (
        envoy_alone(local_envoy_config(ports), ports, tmp_path),
        grpc.insecure_channel(f"{LOOPBACK}:{ports.envoy}") as channel,
        pytest.raises(grpc.RpcError) as error,
    ):
        gcd_pb2_grpc.GCDServiceStub(channel).Compute(gcd_pb2.ComputeRequest(a=1, b=2), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    details = error.value.details() or ""
    assert details.startswith("upstream connect error"), details
