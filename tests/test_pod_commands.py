"""The pi pod's two containers, run here the way their images and kubelet run them (pods.py)."""

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clients import Reply, http_request
from deployment import KUBECTL, render
from pods import Pod, PodTemplate
from processes import wait_until

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl with built-in kustomize is not installed")
# Envoy health-checks the server every 2 s (envoy/envoy.yaml).
READMITTED_WITHIN_SECONDS = 10.0


def first_reply(port: int, wanted: Callable[[Reply], bool], timeout: float) -> Reply:
    """The first reply to GET /gcd/12/18 that is wanted, or the last one once timeout is over."""
    deadline = time.monotonic() + timeout
    while True:
        reply = http_request(port, "/gcd/12/18")
        if wanted(reply) or time.monotonic() > deadline:
            return reply


@pytest.fixture(scope="module")
def template() -> PodTemplate:
    return PodTemplate.of(render("pi"))


def test_pi_pod_serves_rest_and_its_server_exits_0_on_sigterm(template: PodTemplate, tmp_path: Path) -> None:
    with Pod(template, tmp_path, "pod") as pod:
        pod.start()
        wait_until(pod.is_ready, READMITTED_WITHIN_SECONDS, "pod ready")
        assert http_request(pod.ports.rest, "/gcd/12/18").json() == {"result": "6"}
        assert pod.stop_server() == 0


def test_a_server_restarted_in_the_pod_makes_it_ready_again(template: PodTemplate, tmp_path: Path) -> None:
    """kubelet restarts the server alone after a failed liveness probe, running its preStop and
    SIGTERM first: the drain must tell clients to leave, then the pod must become Ready again."""
    with Pod(template, tmp_path, "pod") as pod:
        pod.start()
        wait_until(pod.is_ready, READMITTED_WITHIN_SECONDS, "pod ready")
        assert "connection" not in http_request(pod.ports.rest, "/gcd/12/18").headers

        pod.signal_server()
        # The server keeps serving through Envoy's drain time, telling each client to reconnect.
        draining = first_reply(pod.ports.rest, lambda reply: "connection" in reply.headers, timeout=1.0)
        assert draining.status == 200 and draining.headers["connection"] == "close"
        assert pod.server_exit_code() == 0

        pod.start_server()
        took = wait_until(pod.is_ready, READMITTED_WITHIN_SECONDS, "pod ready again")
        reply = http_request(pod.ports.rest, "/gcd/12/18")
        assert reply.json() == {"result": "6"} and "connection" not in reply.headers
        assert took < READMITTED_WITHIN_SECONDS
