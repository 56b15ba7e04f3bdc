"""Native gRPC clients, grpcurl and Python, against the server directly and through Envoy's port."""

import json
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_server.app import SERVICE_NAME
from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.ports import Ports

from processes import SCRIPTS

SERVICES = [
    SERVICE_NAME,
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
]


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPTS / "grpcurl"), "-plaintext", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(params=["server", "envoy"])
def target(request: pytest.FixtureRequest, stack_ports: Ports) -> str:
    port = stack_ports.grpc if request.param == "server" else stack_ports.envoy
    return f"{LOOPBACK}:{port}"


def test_list(target: str) -> None:
    result = grpcurl(target, "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == SERVICES


def test_compute(target: str) -> None:
    result = grpcurl("-d", '{"a":12,"b":18}', target, f"{SERVICE_NAME}/Compute")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"result": "6"}


def test_describe_service_and_messages(target: str) -> None:
    service = grpcurl(target, "describe", SERVICE_NAME)
    assert service.returncode == 0, service.stderr
    assert "rpc Compute ( .gcd.v1.ComputeRequest ) returns ( .gcd.v1.ComputeResponse )" in service.stdout
    assert 'get:"/gcd/{a}/{b}"' in service.stdout
    request = grpcurl(target, "describe", "gcd.v1.ComputeRequest")
    assert "uint64 a = 1;" in request.stdout and "uint64 b = 2;" in request.stdout
    response = grpcurl(target, "describe", "gcd.v1.ComputeResponse")
    assert "uint64 result = 1;" in response.stdout


def test_health_check_on_the_servers_port(stack_ports: Ports) -> None:
    target = f"{LOOPBACK}:{stack_ports.grpc}"
    result = grpcurl("-d", json.dumps({"service": SERVICE_NAME}), target, "grpc.health.v1.Health/Check")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"status": "SERVING"}


@pytest.mark.parametrize("method", ["Check", "Watch"])
def test_health_is_not_served_on_envoys_port(stack_ports: Ports, method: str) -> None:
    """Envoy's port serves the product; kubelet and Envoy check health on the server's port."""
    target = f"{LOOPBACK}:{stack_ports.envoy}"
    result = grpcurl("-d", json.dumps({"service": SERVICE_NAME}), target, f"grpc.health.v1.Health/{method}")
    assert "Code: Unimplemented" in result.stderr, result.stderr


def test_health_watch_is_not_served(stack_ports: Ports) -> None:
    """grpcio-health-checking's Watch can deadlock the servicer (gcd_server/app.py)."""
    with grpc.insecure_channel(f"{LOOPBACK}:{stack_ports.grpc}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5
        )
        with pytest.raises(grpc.RpcError) as error:
            next(watch)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unknown_method_is_unimplemented(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(f"/{SERVICE_NAME}/Nope")
        with pytest.raises(grpc.RpcError) as error:
            call(b"", timeout=5)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_python_client(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        assert gcd_pb2_grpc.GCDServiceStub(channel).Compute(gcd_pb2.ComputeRequest(a=0, b=0), timeout=5).result == 0
