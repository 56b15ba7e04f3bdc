"""gcd_client, as another service in the cluster uses it: its target is the headless Service the
manifests deploy, its keepalive fits the server's ping policy, a call that meets a server going
away is repeated, a call gets the client's deadline, and docs/deploy.md shows the very
service config it uses."""

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
import pytest

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_client import DEADLINE_SECONDS, HEADLESS_SERVICE, KEEPALIVE_OPTIONS, PORT, SERVICE_CONFIG, TARGET, connect
from gcd_server.app import MIN_CLIENT_PING_INTERVAL_MS
from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.processes import default_ports
from gcd_testing.ports import free_port

from deployment import KUBECTL, container, find, render
from processes import REPO


class Servicer(gcd_pb2_grpc.GCDServiceServicer):
    """Answers UNAVAILABLE to the first `unavailable` calls, and takes `delay` seconds a call."""

    def __init__(self, unavailable: int = 0, delay: float = 0.0) -> None:
        self.unavailable = unavailable
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def Compute(  # noqa: N802 (the name the generated base class gives it)
        self, request: gcd_pb2.ComputeRequest, context: grpc.ServicerContext
    ) -> gcd_pb2.ComputeResponse:
        with self._lock:
            self.calls += 1
            refuse = self.calls <= self.unavailable
        if refuse:
            context.abort(grpc.StatusCode.UNAVAILABLE, "going away")
        time.sleep(self.delay)
        return gcd_pb2.ComputeResponse(result=6)


@contextmanager
def serving(servicer: Servicer) -> Iterator[str]:
    """servicer on a free loopback port; its target."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    gcd_pb2_grpc.add_GCDServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"{LOOPBACK}:{free_port()}")
    server.start()
    try:
        yield f"{LOOPBACK}:{port}"
    finally:
        server.stop(0).wait()


@pytest.mark.skipif(KUBECTL is None, reason="kubectl with built-in kustomize is not installed")
def test_the_target_is_the_headless_service_of_the_servers_grpc_port() -> None:
    manifests = render("pi")
    name, namespace = HEADLESS_SERVICE.split(".")[:2]
    service = find(manifests, "Service", name)
    assert f"dns:///{name}.{namespace}.svc.cluster.local:{PORT}" == TARGET
    assert service["metadata"]["namespace"] == namespace
    assert service["spec"]["clusterIP"] == "None"
    assert [(each["port"], each["targetPort"]) for each in service["spec"]["ports"]] == [(PORT, PORT)]
    assert default_ports().grpc == PORT
    assert PORT in [each["containerPort"] for each in container(manifests, "server")["ports"]]


def test_keepalive_pings_no_more_often_than_the_server_accepts() -> None:
    options = dict(KEEPALIVE_OPTIONS)
    assert options["grpc.keepalive_time_ms"] >= MIN_CLIENT_PING_INTERVAL_MS
    # The server closes idle connections; pings on them would only be strikes.
    assert options["grpc.keepalive_permit_without_calls"] == 0


def test_deploy_md_shows_the_service_config_the_client_uses() -> None:
    text = (REPO / "docs" / "deploy.md").read_text()
    shown = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]
    assert SERVICE_CONFIG in shown, "docs/deploy.md: show client/gcd_client/__init__.py's SERVICE_CONFIG"
    assert TARGET in text, "docs/deploy.md: name client/gcd_client/__init__.py's TARGET"


def test_a_call_answered_unavailable_is_made_again() -> None:
    servicer = Servicer(unavailable=2)
    with serving(servicer) as target, connect(target) as client:
        assert client.compute(12, 18) == 6
    assert servicer.calls == 3


def test_options_given_to_connect_win_over_its_own() -> None:
    servicer = Servicer(unavailable=1)
    no_retries = ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]}))
    with (
        serving(servicer) as target,
        connect(target, options=[no_retries]) as client,
        pytest.raises(grpc.RpcError) as refused,
    ):
        client.compute(12, 18)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == 1


def test_a_call_gets_the_clients_deadline() -> None:
    deadline = DEADLINE_SECONDS
    with serving(Servicer(delay=deadline + 1)) as target, connect(target) as client:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as late:
            client.compute(12, 18)
        waited = time.monotonic() - started
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert deadline <= waited < deadline + 1
