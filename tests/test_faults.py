"""Faults: a server killed outright, and SIGTERM in the middle of load, through the real stack."""

import http.client
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import grpc
import pytest

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_server.app import build_server, drain
from gcd_server.servicer import GCDServicer
from gcd_server.settings import Settings
from gcd_stack.envoy_config import LOOPBACK
from gcd_stack.ports import Ports
from gcd_testing.ports import free_port
from gcd_testing.proc import children, is_alive

from clients import http_request
from figures import record_figure
from processes import json_lines, running_server, server_pid

pytestmark = pytest.mark.faults
LOAD_THREADS = 8
LOAD_SECONDS_BEFORE_SIGNAL = 0.5
GRACE_SECONDS = 2.0


def test_killed_server_gives_fast_json_503s_then_comes_back(own_stack: tuple[Ports, subprocess.Popen[bytes]]) -> None:
    ports, stack = own_stack
    killed = server_pid(stack)
    os.kill(killed, signal.SIGKILL)
    killed_at = time.monotonic()

    first_503 = None
    while True:
        reply = http_request(ports.envoy, "/gcd/12/18")
        if reply.status == 200:
            break
        assert reply.status == 503 and reply.json()["code"] == 14, (reply.status, reply.body)
        first_503 = first_503 or time.monotonic() - killed_at
        assert time.monotonic() - killed_at < 10, "the stack did not bring the server back"
        time.sleep(0.005)
    recovered = time.monotonic() - killed_at
    assert reply.json() == {"result": "6"}
    assert first_503 is not None and first_503 < 1.0
    assert server_pid(stack) != killed and stack.poll() is None
    record_figure("kill -9 of the server: first JSON 503 after (ms)", f"{first_503 * 1000:.1f}")
    record_figure("kill -9 of the server: REST answers 200 again after (s)", f"{recovered:.2f}")


def grpc_load(port: int, stop: threading.Event, outcomes: Counter[str]) -> None:
    """Compute calls in a loop until stop, or until the server refuses one."""
    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        stub = gcd_pb2_grpc.GCDServiceStub(channel)
        while not stop.is_set():
            try:
                assert stub.Compute(gcd_pb2.ComputeRequest(a=12, b=18), timeout=5).result == 6
                outcomes["ok"] += 1
            except grpc.RpcError as error:
                outcomes[error.code().name] += 1
                return


@contextmanager
def under_load(target: Callable[[int, threading.Event, Counter[str]], None], port: int) -> Iterator[Counter[str]]:
    outcomes: Counter[str] = Counter()
    stop = threading.Event()
    threads = [threading.Thread(target=target, args=(port, stop, outcomes)) for _ in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_SECONDS_BEFORE_SIGNAL)
    try:
        yield outcomes
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


def test_every_rpc_the_server_starts_completes_when_it_drains(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process, to count inside the server: what SIGTERM runs (drain) in the middle of load."""
    counts: Counter[str] = Counter()
    compute = GCDServicer.Compute

    def counted(self: GCDServicer, request: gcd_pb2.ComputeRequest, context: grpc.ServicerContext) -> object:
        counts["started"] += 1
        response = compute(self, request, context)
        counts["completed"] += 1
        return response

    monkeypatch.setattr(GCDServicer, "Compute", counted)
    port = free_port()
    server, health_servicer = build_server(Settings(LOOPBACK, port, GRACE_SECONDS, "INFO"))
    server.start()
    with under_load(grpc_load, port) as outcomes:
        drain([server], health_servicer, GRACE_SECONDS)
    unstarted = {code: n for code, n in outcomes.items() if code != "ok"}
    record_figure(
        "drain under gRPC load: RPCs started / completed / answered OK",
        f"{counts['started']} / {counts['completed']} / {outcomes['ok']}",
    )
    record_figure("drain under gRPC load: calls refused unstarted", ", ".join(f"{n} {c}" for c, n in unstarted.items()))
    assert counts["started"] == counts["completed"] == outcomes["ok"] > 0
    assert unstarted.keys() <= {"UNAVAILABLE", "CANCELLED"}


def stopping_time(log: Path) -> float:
    """When gcd-server began refusing new RPCs, from its log line, as time.time() counts."""
    (record,) = [r for r in json_lines(log) if r["message"].startswith("stopping: new RPCs refused")]
    return datetime.fromisoformat(record["time"]).timestamp()


def test_sigterm_under_grpc_load_exits_0_and_fails_nothing_before_stopping(tmp_path: Path) -> None:
    with (
        running_server(tmp_path, "--grace", str(GRACE_SECONDS)) as (port, server),
        under_load(grpc_load, port) as outcomes,
    ):
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(GRACE_SECONDS + 5) == 0
        exited_after = time.monotonic() - signalled
    record_figure("SIGTERM under gRPC load: server exit 0 after (s)", f"{exited_after:.2f}")
    assert outcomes["ok"] > 0 and outcomes.keys() <= {"ok", "UNAVAILABLE", "CANCELLED"}, outcomes
    assert exited_after < GRACE_SECONDS + 1


def rest_load(port: int, stop: threading.Event, outcomes: Counter[str]) -> None:
    """Keep-alive REST requests until stop. Each outcome is counted under its kind and, for
    anything but a right answer, also as "<kind> at <time.time()>" for the caller to place."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    while not stop.is_set():
        try:
            connection.request("GET", "/gcd/12/18")
            response = connection.getresponse()
            body = response.read()
            kind = "ok" if (response.status, body) == (200, b'{"result":"6"}') else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as error:
            kind = type(error).__name__
            connection.close()
        outcomes[kind] += 1
        if kind != "ok":
            outcomes[f"{kind} at {time.time()}"] += 1
            time.sleep(0.01)
    connection.close()


def test_sigterm_to_the_stack_under_rest_load_fails_nothing_before_the_server_stops(
    own_stack: tuple[Ports, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    ports, stack = own_stack
    started = children(stack.pid)
    with under_load(rest_load, ports.envoy) as outcomes:
        signalled = time.monotonic()
        stack.send_signal(signal.SIGTERM)
        assert stack.wait(30) == 0
        stopped_after = time.monotonic() - signalled
    assert not any(is_alive(pid) for pid in started)

    server_stopping = stopping_time(tmp_path / "stack.err")
    timed = [(kind.split(" at ")[0], float(kind.split(" at ")[1])) for kind in outcomes if " at " in kind]
    before = Counter(kind for kind, at in timed if at < server_stopping)
    after = Counter(kind for kind, at in timed if at >= server_stopping)
    record_figure("SIGTERM to the stack under REST load: requests answered right", outcomes["ok"])
    record_figure("SIGTERM to the stack under REST load: failed while the server served", sum(before.values()))
    record_figure(
        "SIGTERM to the stack under REST load: refused once it stopped",
        ", ".join(f"{n} {kind}" for kind, n in after.most_common()),
    )
    record_figure("SIGTERM to the stack under REST load: all stopped after (s)", f"{stopped_after:.2f}")
    assert outcomes["ok"] > 0
    assert not before, before
