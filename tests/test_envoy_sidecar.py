"""gcd-server's side of the Envoy sidecar (gcd_server/envoy_sidecar.py) against a stand-in for
Envoy's admin API that answers as told and records what it was asked, so the order of calls and
the retries can be checked; the real Envoy's side is in test_pod_commands.py and test_rollout.py."""

import http.server
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from gcd_server import envoy_sidecar
from gcd_server.envoy_sidecar import CLIENT_CONNECTIONS_STAT, EnvoySidecar
from gcd_stack.envoy_config import packaged_config, stat_prefix

from processes import wait_until


@dataclass
class FakeAdmin:
    """What each admin path answers: a status and a body, or a callable giving them."""

    answers: dict[str, Callable[[], tuple[int, str]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    socket: str = ""


@contextmanager
def fake_admin(answers: dict[str, Callable[[], tuple[int, str]]]) -> Iterator[FakeAdmin]:
    admin = FakeAdmin(answers)

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            path = self.path.split("?")[0]
            admin.asked.append(f"{self.command} {path}")
            status, body = admin.answers.get(path, lambda: (404, ""))()
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body.encode())

        do_GET = do_POST = answer  # noqa: N815 - http.server's naming

        def log_message(self, *args: object) -> None:
            pass

    # An abstract unix socket, as the pod's Envoy listens on, of a name no other test uses.
    admin.socket = f"@gcd-test-admin-{uuid.uuid4().hex}"
    server = socketserver.ThreadingUnixStreamServer("\0" + admin.socket[1:], Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield admin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def replies(*answers: tuple[int, str]) -> Callable[[], tuple[int, str]]:
    """Each call the next answer, the last one for ever after."""
    left = list(answers)
    return lambda: left.pop(0) if len(left) > 1 else left[0]


SERVER_INFO = (200, '{"command_line_options": {"drain_time": "2s"}}')


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envoy_sidecar, "_READMIT_FIRST_RETRY_SECONDS", 0.05)


def test_the_statistic_read_is_the_rest_and_grpc_listeners() -> None:
    assert f"http.{stat_prefix(packaged_config())}.downstream_cx_active" == CLIENT_CONNECTIONS_STAT, (
        "server/gcd_server/envoy_sidecar.py's CLIENT_CONNECTIONS_STAT and envoy/envoy.yaml's stat_prefix differ"
    )


def test_drain_fails_envoy_then_waits_until_its_clients_have_gone() -> None:
    connections = replies(*((200, f"{CLIENT_CONNECTIONS_STAT}: {n}\n") for n in (3, 2, 1, 0)))
    answers = {"/server_info": lambda: SERVER_INFO, "/healthcheck/fail": lambda: (200, "OK"), "/stats": connections}
    with fake_admin(answers) as admin:
        started = time.monotonic()
        EnvoySidecar(admin.socket).drain()
        took = time.monotonic() - started
    assert admin.asked[:2] == ["GET /server_info", "POST /healthcheck/fail"]
    assert admin.asked[2:] == ["GET /stats"] * 4
    assert took < 1.0, "it must stop waiting once no client is left"


def test_drain_waits_the_whole_drain_time_when_envoy_does_not_count() -> None:
    answers = {"/server_info": lambda: SERVER_INFO, "/healthcheck/fail": lambda: (200, "OK")}
    with fake_admin(answers) as admin:
        started = time.monotonic()
        EnvoySidecar(admin.socket).drain()
        assert 2.0 <= time.monotonic() - started < 3.0


def test_readmission_is_retried_until_envoy_takes_it() -> None:
    with fake_admin({"/healthcheck/ok": replies((503, ""), (503, ""), (200, "OK"))}) as admin:
        EnvoySidecar(admin.socket).readmit_in_background()
        wait_until(lambda: admin.asked.count("POST /healthcheck/ok") == 3, 5, "three tries")
        time.sleep(0.3)
        assert admin.asked.count("POST /healthcheck/ok") == 3, "no try after Envoy has taken it"


def test_a_readmission_never_lands_after_the_drain_has_begun() -> None:
    answers = {
        "/healthcheck/ok": lambda: (503, ""),
        "/server_info": lambda: SERVER_INFO,
        "/healthcheck/fail": lambda: (200, "OK"),
        "/stats": lambda: (200, f"{CLIENT_CONNECTIONS_STAT}: 0\n"),
    }
    with fake_admin(answers) as admin:
        sidecar = EnvoySidecar(admin.socket)
        sidecar.readmit_in_background()
        wait_until(lambda: "POST /healthcheck/ok" in admin.asked, 5, "a first try")
        sidecar.drain()
        time.sleep(0.3)
    failed_at = admin.asked.index("POST /healthcheck/fail")
    assert "POST /healthcheck/ok" not in admin.asked[failed_at:]


def test_no_envoy_listening_means_nothing_to_readmit(caplog: pytest.LogCaptureFixture) -> None:
    with fake_admin({}) as admin:
        address = admin.socket
    caplog.set_level("INFO")
    sidecar = EnvoySidecar(address)
    sidecar.readmit_in_background()
    wait_until(lambda: "not started yet" in caplog.text, 5, "the log line")
