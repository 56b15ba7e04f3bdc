"""The pi pod's two containers, run here the way their images and kubelet run them (pods.py)."""

import http.client
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.processes import url_answers_ok

from clients import http_request
from deployment import KUBECTL, render
from pods import Pod, PodTemplate
from processes import REPO, wait_until

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl with built-in kustomize is not installed")
# Envoy health-checks the server every 2 s (envoy/envoy.yaml).
READMITTED_WITHIN_SECONDS = 10.0


def keep_alive_reply(client: http.client.HTTPConnection) -> http.client.HTTPResponse:
    client.request("GET", "/gcd/12/18")
    response = client.getresponse()
    assert response.read() == b'{"result":"6"}'
    return response


@pytest.fixture(scope="module")
def template() -> PodTemplate:
    return PodTemplate.of(render("pi"))


def test_pi_pod_serves_rest_and_its_server_exits_0_on_sigterm(template: PodTemplate, tmp_path: Path) -> None:
    with Pod(template, tmp_path, "pod") as pod:
        pod.start()
        wait_until(pod.is_ready, READMITTED_WITHIN_SECONDS, "pod ready")
        assert http_request(pod.ports.envoy, "/gcd/12/18").json() == {"result": "6"}
        # docs/deploy.md's way into Envoy's admin API, from the server container.
        (code,) = re.findall(
            r'exec deploy/gcd -c server -- python -c "(.+?)"', (REPO / "docs" / "deploy.md").read_text()
        )
        pod_socket = template.server_env["GCD_ENVOY_ADMIN"]
        asked = subprocess.run(
            [sys.executable, "-c", code.replace(f"'{pod_socket}'", f"'{pod.admin_socket}'")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert asked.returncode == 0, asked.stderr
        assert "cluster.gcd_server.upstream_cx_active" in asked.stdout
        assert pod.stop_server() == 0


def test_a_server_restarted_in_the_pod_makes_it_ready_again(template: PodTemplate, tmp_path: Path) -> None:
    """kubelet restarts the server alone after a failed liveness probe, running its preStop and
    SIGTERM first: the drain must tell clients to leave, then the pod must become Ready again."""
    with Pod(template, tmp_path, "pod") as pod:
        pod.start()
        wait_until(pod.is_ready, READMITTED_WITHIN_SECONDS, "pod ready")
        client = http.client.HTTPConnection(LOOPBACK, pod.ports.envoy, timeout=10)
        assert keep_alive_reply(client).getheader("connection") is None

        pod.signal_server()
        wait_until(lambda: not url_answers_ok(pod.envoy_ready_url), 5, "Envoy told to fail its health check")
        # The server serves on while a client is connected, and Envoy tells that client to leave.
        draining = keep_alive_reply(client)
        assert draining.status == 200 and draining.getheader("connection") == "close"
        assert pod.server_exit_code() == 0

        pod.start_server()
        took = wait_until(pod.is_ready, READMITTED_WITHIN_SECONDS, "pod ready again")
        reply = http_request(pod.ports.envoy, "/gcd/12/18")
        assert reply.json() == {"result": "6"} and "connection" not in reply.headers
        assert took < READMITTED_WITHIN_SECONDS
