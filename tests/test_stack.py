"""gcd-stack as a user runs it: start, report, restart a dead server, stop cleanly."""

import dataclasses
import os
import re
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from gcd_stack.ports import Ports
from gcd_stack.processes import health_url, port_is_free, url_answers_ok
from gcd_testing.ports import free_port, free_ports
from gcd_testing.proc import anything_listens_on, children, is_alive

from clients import http_request
from processes import SCRIPTS, json_lines, messages, server_pid, stack_command, wait_until


def test_help_explains_each_flag() -> None:
    result = subprocess.run([str(SCRIPTS / "gcd-stack"), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for text in ("--grpc-port", "--envoy-port", "--envoy-metrics-port", "--envoy-probes-port", "--metrics-port"):
        assert text in result.stdout
    for text in ("default: 3000", "default: 8080", "default: 9102", "default: 8081", "default: 9103"):
        assert text in result.stdout


def test_the_same_port_twice_is_refused() -> None:
    port = str(free_port())
    command = [str(SCRIPTS / "gcd-stack"), "--grpc-port", port, "--envoy-port", port]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "must all be different" in result.stderr


def test_a_busy_port_is_reported_and_nothing_is_left_running(stack_ports: Ports) -> None:
    ports = dataclasses.replace(free_ports(), envoy=stack_ports.envoy)
    result = subprocess.run(stack_command(ports), capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"port(s) {stack_ports.envoy} already in use" in result.stderr
    assert not port_is_free(stack_ports.envoy) and anything_listens_on(stack_ports.envoy)
    assert not anything_listens_on(ports.grpc), "no server may be left behind"


def test_ready_banner_gives_the_urls(own_stack: tuple[Ports, subprocess.Popen[bytes]], tmp_path: Path) -> None:
    ports, _ = own_stack
    wait_until(lambda: "Ctrl-C" in (tmp_path / "stack.out").read_text(), 5, "banner")
    banner = (tmp_path / "stack.out").read_text()
    assert f"curl http://127.0.0.1:{ports.envoy}/gcd/12/18" in banner
    assert f"grpcurl -plaintext 127.0.0.1:{ports.grpc} list" in banner
    assert health_url(ports) in banner


def test_envoys_admin_is_a_unix_socket_in_a_private_directory_gone_after_the_stop(
    own_stack: tuple[Ports, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """No TCP port a browser tab could POST to: only this user reaches the admin API."""
    _, stack = own_stack
    wait_until(lambda: "Ctrl-C" in (tmp_path / "stack.out").read_text(), 5, "banner")
    (socket_path,) = re.findall(r"curl --unix-socket (\S+) http://envoy/", (tmp_path / "stack.out").read_text())
    private = Path(socket_path).parent
    assert stat.S_ISSOCK(Path(socket_path).stat().st_mode)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    stack.terminate()
    assert stack.wait(20) == 0
    assert not private.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_everything_and_frees_every_port(
    own_stack: tuple[Ports, subprocess.Popen[bytes]], signum: signal.Signals, tmp_path: Path
) -> None:
    ports, stack = own_stack
    started = children(stack.pid)
    assert len(started) == 2
    stack.send_signal(signum)
    assert stack.wait(20) == 0
    assert not any(is_alive(pid) for pid in started)
    assert not any(anything_listens_on(port) for port in dataclasses.astuple(ports))
    assert messages(tmp_path / "stack.err")[-1] == "stopped"


def test_children_die_with_a_killed_stack(own_stack: tuple[Ports, subprocess.Popen[bytes]]) -> None:
    ports, stack = own_stack
    started = children(stack.pid)
    assert len(started) == 2
    stack.kill()
    stack.wait(5)
    wait_until(lambda: not any(is_alive(pid) for pid in started), 15, "children exit")
    assert not any(anything_listens_on(port) for port in dataclasses.astuple(ports))


def test_envoy_writes_one_json_access_log_line_per_request(
    own_stack: tuple[Ports, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    ports, _ = own_stack
    assert http_request(ports.envoy, "/gcd/123456/7890?ignored=1").status == 200
    assert http_request(ports.envoy, "/gcd/123456/oops").status == 400
    # Looked up by Envoy as GETs: the log still names the client's method.
    assert http_request(ports.envoy, "/gcd/123456/7891", "HEAD").status == 200
    assert http_request(ports.envoy, "/gcd/123456/7892", "POST").status == 405
    assert http_request(ports.envoy, "/gcd/123456/nowhere/else", "DELETE").status == 404

    def logged() -> list[dict[str, object]]:
        return [r for r in json_lines(tmp_path / "stack.out") if str(r.get("path", "")).startswith("/gcd/123456/")]

    wait_until(lambda: len(logged()) == 5, 5, "access log lines")
    by_path = {record["path"]: record for record in logged()}
    ok = by_path["/gcd/123456/7890"]
    assert ok["method"] == "GET" and ok["status"] == 200
    assert ok["grpc_status"] == 0 and ok["upstream_ms"] is not None and ok["request_id"]
    assert isinstance(ok["duration_ms"], int) and ok["protocol"] == "HTTP/1.1"
    assert by_path["/gcd/123456/oops"]["status"] == 400
    methods = {path: (record["method"], record["status"]) for path, record in by_path.items()}
    assert methods["/gcd/123456/7891"] == ("HEAD", 200)
    assert methods["/gcd/123456/7892"] == ("POST", 405)
    assert methods["/gcd/123456/nowhere/else"] == ("DELETE", 404)


def test_a_server_stopped_by_sigterm_is_restarted_and_envoy_readmits_it(
    own_stack: tuple[Ports, subprocess.Popen[bytes]],
) -> None:
    ports, stack = own_stack
    stopped = server_pid(stack)
    os.kill(stopped, signal.SIGTERM)
    wait_until(lambda: not is_alive(stopped), 15, "the server to drain and exit")
    # The restart waits 0.5 s, and Envoy health-checks the server every 2 s.
    wait_until(lambda: url_answers_ok(health_url(ports)), 10, "Envoy ready again")
    assert http_request(ports.envoy, "/gcd/12/18").json() == {"result": "6"}
    assert server_pid(stack) != stopped and stack.poll() is None
