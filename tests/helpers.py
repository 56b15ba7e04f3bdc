"""Processes and clients shared by the tests: everything on loopback, on free ports, and stopped."""

import http.client
import json
import signal
import socket
import subprocess
import sysconfig
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcd_stack.envoy_config import Config, Ports, health_path, packaged_config

REPO = Path(__file__).resolve().parents[1]
HEALTH_PATH = health_path(packaged_config())
SCRIPTS = Path(sysconfig.get_path("scripts"))
LOOPBACK = "127.0.0.1"
START_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Polls condition until it holds; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - started


@contextmanager
def running(
    args: list[str], log_dir: Path, name: str, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Runs args with stdout and stderr in log files; kills it on the way out if still alive."""
    with (log_dir / f"{name}.out").open("w") as out, (log_dir / f"{name}.err").open("w") as err:
        process = subprocess.Popen(args, stdout=out, stderr=err, text=True, env=env)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def wait_for_start(process: subprocess.Popen[str], ready: Callable[[], bool], log_dir: Path, name: str) -> None:
    """Waits until ready() holds; fails with the process's stderr if it exits first."""

    def ready_or_exited() -> bool:
        return process.poll() is not None or ready()

    wait_until(ready_or_exited, START_TIMEOUT_SECONDS, f"{name} start")
    if process.poll() is not None:
        raise RuntimeError(f"{name} exited with {process.returncode}: {(log_dir / f'{name}.err').read_text()}")


def server_command(port: int, *extra: str) -> list[str]:
    return [str(SCRIPTS / "gcd-server"), "--host", LOOPBACK, "--port", str(port), *extra]


def free_ports() -> Ports:
    return Ports(rest=free_port(), admin=free_port(), grpc=free_port())


def stack_command(ports: Ports) -> list[str]:
    flags = {"--grpc-port": ports.grpc, "--rest-port": ports.rest, "--admin-port": ports.admin}
    return [str(SCRIPTS / "gcd-stack"), *(str(item) for flag in flags.items() for item in flag)]


def health_url(ports: Ports) -> str:
    return f"http://{LOOPBACK}:{ports.rest}{HEALTH_PATH}"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    port: int, path: str, method: str = "GET", headers: Mapping[str, str] | None = None, body: bytes | None = None
) -> Reply:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def _stat_fields(pid: int) -> list[str]:
    # The command name in /proc/PID/stat may hold spaces; the fields after its ')' do not.
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def children(parent: int) -> dict[int, str]:
    """Live child processes of parent (Linux /proc): pid -> command line."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        pid = int(stat.parent.name)
        try:
            state, ppid = _stat_fields(pid)[:2]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(ppid) == parent and state != "Z":
            found[pid] = cmdline
    return found


def is_alive(pid: int) -> bool:
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def assert_rest_reply(reply: Reply) -> None:
    """What every REST reply shares: a JSON body, and nothing of gRPC showing through."""
    assert reply.headers["content-type"] == "application/json"
    assert not [name for name in reply.headers if name.startswith("grpc-")]


def routes(config: Config) -> list[Config]:
    """Every route of every virtual host of config's listeners."""
    return [
        route
        for listener in config["static_resources"]["listeners"]
        for host in listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
        for route in host["routes"]
    ]
