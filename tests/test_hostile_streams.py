"""Hostile streams and connections, sent as someone on the cluster's network would: storms of
health Watch calls, reflection streams held open, floods of idle connections; on Envoy's public
port (native gRPC, and gRPC-Web from a page of another origin) and on gcd-server's own. During
and after each one the service stays healthy: health Check answers on the server's port, REST
answers through Envoy, and the readiness path and both metrics endpoints answer."""

import dataclasses
import json
import queue
import re
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from h2_frames import END_HEADERS, END_STREAM, HEADERS, SETTINGS, WINDOW_UPDATE, attacker, frame
from hpack import Encoder

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_server.app import (
    HANDSHAKE_TIMEOUT_MS,
    MAX_CONCURRENT_STREAMS,
    MAX_CONNECTION_AGE_GRACE_MS,
    MAX_CONNECTION_AGE_MS,
    MAX_CONNECTION_IDLE_MS,
    MAX_CONNECTIONS,
    MAX_STREAM_SECONDS,
    SERVICE_NAME,
)
from gcd_server.envoy_sidecar import admin_request
from gcd_server.metrics import METRICS_IDLE_SECONDS, METRICS_MAX_CONNECTIONS
from gcd_stack.envoy_config import (
    LOOPBACK,
    METRICS_LISTENER,
    abstract_admin_socket,
    connection_limit,
    connection_manager,
    file_routes,
    heap_budget,
    heap_threshold,
    installed_file,
    packaged_config,
    route_named,
)
from gcd_stack.ports import Ports
from gcd_stack.processes import STOP_TIMEOUT_SECONDS
from gcd_testing.grpc_frame import grpc_frame
from gcd_testing.ports import free_ports
from gcd_testing.proc import children, is_alive, listening_tcp_ports, resident_bytes, thread_count
from gcd_testing.stats import percentile
from gcd_testing.tool_output import parse_h2load

from clients import COMPUTE, grpc_web_headers, http_request, http_request_bytes, open_connections
from deployment import KUBECTL, memory_limit_bytes, render
from figures import record_figure
from processes import (
    HEALTH_PATH,
    envoy_alone,
    envoy_pid,
    local_envoy_config,
    running_server,
    running_stack,
    server_pid,
    wait_until,
)

pytestmark = pytest.mark.faults
# Enough to wedge grpcio-health-checking's Watch, and more streams than the server has threads.
WATCH_CALLS = 40
HELD_STREAMS = 6
# More than the public listener's limit, well under the global one plus the metrics listener's.
FLOOD_CONNECTIONS = 1000
ATTACKER_ORIGIN = "https://attacker.example"
WATCH = "/grpc.health.v1.Health/Watch"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
SAMPLES = 30
# Twice the server's worker threads, each of which such a call would hold.
STALLED_CALLS = 8
# Enough for every connection of the burst to have all its streams in flight at once.
BURST_CALLS = 20_000
# Quarter-second samples of a process's memory, after the last connection of an attack is open.
UNREAD_SAMPLES = 20
# What an attack bounded by flow control may still cost the server: its buffers, not the attack's
# size (unbounded, one took it from 45 to 378 MiB).
ATTACK_GROWTH_BOUND_BYTES = 16 * 2**20
# Generous for a loaded 2-core machine; an unloaded call takes about a millisecond.
HEALTHY_P99_SECONDS = 0.5


@dataclass(frozen=True)
class Health:
    """What kubelet, Prometheus and a client would see at one moment."""

    check: str  # the server's own health Check, as kubelet's gRPC probe asks it (sidecar port)
    rest_p99_ms: float
    rest_failed: int
    readiness: int
    envoy_metrics: int
    server_metrics: int

    def __str__(self) -> str:
        rest = f"REST p99 {self.rest_p99_ms:.1f} ms ({self.rest_failed} failed), " if self.rest_p99_ms else ""
        return (
            f"Check {self.check}, {rest}readiness {self.readiness}, metrics {self.envoy_metrics}/{self.server_metrics}"
        )


def status_of(port: int, path: str) -> int:
    try:
        return http_request(port, path).status
    except OSError:
        return 0


def health_now(ports: Ports, rest: bool = True) -> Health:
    with grpc.insecure_channel(
        f"{LOOPBACK}:{ports.sidecar}", options=[("grpc.use_local_subchannel_pool", 1)]
    ) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=2
            )
            check = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as error:
            check = error.code().name
    samples, failed = [], 0
    for i in range(SAMPLES if rest else 0):
        started = time.monotonic()
        try:
            ok = http_request(ports.envoy, f"/gcd/{12 * i}/18").status == 200
        except OSError:
            ok = False
        samples.append(time.monotonic() - started)
        failed += not ok
    return Health(
        check=check,
        rest_p99_ms=percentile(samples, 0.99) * 1000 if samples else 0.0,
        rest_failed=failed,
        readiness=status_of(ports.envoy_probes, HEALTH_PATH),
        envoy_metrics=status_of(ports.envoy_metrics, "/stats/prometheus"),
        server_metrics=status_of(ports.metrics, "/metrics"),
    )


def assert_healthy(health: Health, rest: bool = True) -> None:
    assert health.check == "SERVING", health
    assert (health.readiness, health.envoy_metrics, health.server_metrics) == (200, 200, 200), health
    if rest:
        assert health.rest_failed == 0, health
        assert health.rest_p99_ms < HEALTHY_P99_SECONDS * 1000, health


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Ports, subprocess.Popen[bytes]]]:
    """One gcd-stack for the whole module, so that damage an attack leaves shows in the next; at
    the end it must still stop on SIGTERM, with exit 0 and no process left behind."""
    with running_stack(tmp_path_factory.mktemp("hostile-streams")) as (ports, process):
        yield ports, process
        pids = list(children(process.pid))
        process.terminate()
        assert process.wait(STOP_TIMEOUT_SECONDS + 5) == 0
        assert not [pid for pid in pids if is_alive(pid)]


@pytest.fixture
def ports(stack: tuple[Ports, subprocess.Popen[bytes]]) -> Iterator[Ports]:
    yield stack[0]
    assert_healthy(health_now(stack[0]))


def record(attack: str, during: Health | None, after: Health) -> None:
    if during:
        record_figure(f"{attack}: during", during)
    record_figure(f"{attack}: after", after)


def watch_storm_grpc(port: int) -> Counter[str]:
    """WATCH_CALLS health Watch calls at once, each cancelled after its first reply."""
    outcomes: Counter[str] = Counter()
    with grpc.insecure_channel(f"{LOOPBACK}:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        calls = [stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5) for _ in range(WATCH_CALLS)]
        for call in calls:
            try:
                next(call)
                outcomes["a first reply"] += 1
            except grpc.RpcError as error:
                outcomes[error.code().name] += 1
            call.cancel()
    return outcomes


def watch_storm_grpc_web(port: int) -> Counter[str]:
    """The same as gRPC-Web over HTTP/1.1, as a page of another origin sends it: each call's
    connection closed once the first bytes of its answer came."""
    outcomes: Counter[str] = Counter()
    body = grpc_frame(health_pb2.HealthCheckRequest(service=SERVICE_NAME).SerializeToString())
    request = http_request_bytes("POST", WATCH, grpc_web_headers() | {"origin": ATTACKER_ORIGIN}, body)

    def one() -> None:
        with socket.create_connection((LOOPBACK, port), timeout=5) as connection:
            connection.sendall(request)
            try:
                head = connection.recv(4096).split(b"\r\n\r\n", 1)[0].decode(errors="replace")
            except OSError as error:
                head = type(error).__name__
            status = next((line for line in head.split("\r\n") if line.lower().startswith("grpc-status:")), "")
            outcomes[status or head.split("\r\n")[0]] += 1

    threads = [threading.Thread(target=one) for _ in range(WATCH_CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcomes


@pytest.mark.parametrize("path", ["Envoy's port, gRPC", "Envoy's port, gRPC-Web from another origin", "server's port"])
def test_a_storm_of_cancelled_health_watches_leaves_the_server_healthy(ports: Ports, path: str) -> None:
    if path == "server's port":
        outcomes = watch_storm_grpc(ports.grpc)
    elif path == "Envoy's port, gRPC":
        outcomes = watch_storm_grpc(ports.envoy)
    else:
        outcomes = watch_storm_grpc_web(ports.envoy)
    after = health_now(ports)
    record(f"{WATCH_CALLS} cancelled health Watch calls, {path} ({dict(outcomes)})", None, after)
    assert_healthy(after)
    # Watch is served nowhere: every call is refused with a gRPC status, none with a reset.
    assert outcomes in (Counter({"UNIMPLEMENTED": WATCH_CALLS}), Counter({"grpc-status: 12": WATCH_CALLS})), outcomes


class HeldStreams:
    """Reflection streams held open on one channel: each asks once, reads the answer, then
    sends another request every second for as long as it is held, or, not talking, nothing."""

    def __init__(self, port: int, count: int, talking: bool = True) -> None:
        self._channel = grpc.insecure_channel(f"{LOOPBACK}:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        self._requests: list[queue.Queue[reflection_pb2.ServerReflectionRequest | None]] = []
        self._calls: list[grpc.Future[object]] = []
        self.outcomes: Counter[str] = Counter()
        stub = reflection_pb2_grpc.ServerReflectionStub(self._channel)
        for _ in range(count):
            requests: queue.Queue[reflection_pb2.ServerReflectionRequest | None] = queue.Queue()
            requests.put(reflection_pb2.ServerReflectionRequest(list_services=""))
            call = stub.ServerReflectionInfo(iter(requests.get, None))
            self._requests.append(requests)
            self._calls.append(call)
        for index in range(count):
            try:
                self.next_reply(index)
                self.outcomes["held open"] += 1
            except grpc.RpcError as error:
                self.outcomes[error.code().name] += 1
        self._stop = threading.Event()
        self._feeder = threading.Thread(target=self._feed if talking else self._stop.wait, daemon=True)
        self._feeder.start()

    def next_reply(self, index: int) -> object:
        """The next answer on stream index; raises grpc.RpcError once the stream has ended."""
        return next(self._calls[index])  # type: ignore[call-overload]

    def _feed(self) -> None:
        while not self._stop.wait(1.0):
            for requests in self._requests:
                requests.put(reflection_pb2.ServerReflectionRequest(list_services=""))

    def close(self) -> None:
        self._stop.set()
        self._feeder.join()
        for call in self._calls:
            call.cancel()
        self._channel.close()


@contextmanager
def held_streams(port: int, count: int = HELD_STREAMS, talking: bool = True) -> Iterator[HeldStreams]:
    streams = HeldStreams(port, count, talking)
    try:
        yield streams
    finally:
        streams.close()


def compute_directly(port: int) -> str:
    with grpc.insecure_channel(f"{LOOPBACK}:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        try:
            gcd_pb2_grpc.GCDServiceStub(channel).Compute(gcd_pb2.ComputeRequest(a=12, b=18), timeout=2)
        except grpc.RpcError as error:
            return error.code().name
    return "OK"


@pytest.mark.parametrize("through", ["Envoy's port", "server's port"])
def test_held_reflection_streams_do_not_starve_unary_calls(ports: Ports, through: str) -> None:
    with held_streams(ports.envoy if through == "Envoy's port" else ports.grpc) as streams:
        time.sleep(1.5)
        during = health_now(ports)
        compute = compute_directly(ports.grpc)
    record(
        f"{HELD_STREAMS} reflection streams held open, {through} ({dict(streams.outcomes)})", during, health_now(ports)
    )
    assert_healthy(during)
    assert compute == "OK"
    # The rest are refused at once, with a status, rather than queued behind the held ones.
    assert streams.outcomes == Counter(
        {"held open": MAX_CONCURRENT_STREAMS, "RESOURCE_EXHAUSTED": HELD_STREAMS - MAX_CONCURRENT_STREAMS}
    )


def non_reading_client() -> h2.connection.H2Connection:
    """An HTTP/2 client that opens a flow-control window of 0, and so never takes a byte of an
    answer; its preface is ready to send."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
    )
    client.initiate_connection()
    return client


@contextmanager
def fresh_envoy(log_dir: Path) -> Iterator[tuple[Ports, subprocess.Popen[bytes]]]:
    """An Envoy of its own with the pod's config, in front of a server of its own: tcmalloc keeps
    the heap an Envoy has grown to, so what one attack makes it hold is measured alone."""
    with running_server(log_dir) as (server_port, _):
        ports = dataclasses.replace(free_ports(), sidecar=server_port)
        with envoy_alone(local_envoy_config(ports), ports, log_dir) as envoy:
            yield ports, envoy


@contextmanager
def unread_reflection(port: int, streams: int) -> Iterator[None]:
    """streams reflection streams on one HTTP/2 connection, each sent requests for the largest
    answer reflection gives as fast as flow control lets them go, and whose client never reads an
    answer (a flow-control window of 0)."""
    request = grpc_frame(
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME).SerializeToString()
    )
    stop = threading.Event()

    def attack() -> None:
        with socket.create_connection((LOOPBACK, port)) as connection:
            connection.settimeout(0.05)
            client = non_reading_client()
            ids = []
            for _ in range(streams):
                ids.append(stream := client.get_next_available_stream_id())
                headers = [(":method", "POST"), (":scheme", "http"), (":authority", "gcd"), (":path", REFLECTION)]
                client.send_headers(stream, [*headers, ("content-type", "application/grpc"), ("te", "trailers")])
            while not stop.is_set():
                for stream in ids:
                    with suppress(h2.exceptions.StreamClosedError):
                        while client.local_flow_control_window(stream) >= len(request):
                            client.send_data(stream, request)
                try:
                    connection.sendall(client.data_to_send())
                    if not (received := connection.recv(65536)):
                        return
                    client.receive_data(received)
                except TimeoutError:
                    continue
                except OSError:
                    return

    failed: list[BaseException] = []

    def attack_or_fail() -> None:
        try:
            attack()
        except BaseException as error:
            failed.append(error)

    thread = threading.Thread(target=attack_or_fail, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
    assert not failed, failed


@pytest.mark.parametrize("through", ["Envoy's port", "server's port"])
def test_reflection_requests_faster_than_their_answers_cost_bounded_memory_and_stall_nothing(
    stack: tuple[Ports, subprocess.Popen[bytes]], through: str
) -> None:
    """Two reflection streams whose client sends all it may and reads nothing: the server reads
    only a few requests ahead of its answers, and Envoy takes only a little of each answer on the
    connection every client's calls share, so neither the server's memory nor anyone's calls
    suffer."""
    ports, process = stack
    server = server_pid(process)
    limit = memory_limit_bytes(render("pi"), "server")
    before = peak = resident_bytes(server)
    with unread_reflection(ports.envoy if through == "Envoy's port" else ports.grpc, MAX_CONCURRENT_STREAMS):
        for _ in range(UNREAD_SAMPLES):
            time.sleep(0.25)
            peak = max(peak, resident_bytes(server))
        during = health_now(ports)
        peak = max(peak, resident_bytes(server))
    after = health_now(ports)
    label = f"{MAX_CONCURRENT_STREAMS} reflection streams sent requests as fast as they go, never read, {through}"
    record(label, during, after)
    record_figure(
        f"{label}: the server's resident memory before and at its peak (MiB; limit {limit / 2**20:.0f})",
        f"{before / 2**20:.0f}, {peak / 2**20:.0f}",
    )
    assert peak < limit
    # Bounded, not merely under the limit for this long: a few requests and windows' worth.
    assert peak - before < ATTACK_GROWTH_BOUND_BYTES
    assert_healthy(during)


@pytest.mark.parametrize("through", ["Envoy's port", "server's port"])
@pytest.mark.parametrize("talking", [True, False], ids=["sending every second", "silent"])
def test_a_reflection_stream_held_open_is_ended_with_a_status(
    stack: tuple[Ports, subprocess.Popen[bytes]], through: str, talking: bool
) -> None:
    ports, process = stack
    threads_before = thread_count(server_pid(process))
    started = time.monotonic()
    with held_streams(ports.envoy if through == "Envoy's port" else ports.grpc, count=1, talking=talking) as streams:
        ended = ""
        while time.monotonic() - started < MAX_STREAM_SECONDS + 5:
            try:
                streams.next_reply(0)
            except grpc.RpcError as error:
                ended = error.code().name
                break
        took = time.monotonic() - started
    kind = "sending every second" if talking else "silent"
    record_figure(f"a reflection stream held open, {kind}, {through}: ended after (s), with", f"{took:.1f}, {ended}")
    assert ended == "DEADLINE_EXCEEDED"
    assert MAX_STREAM_SECONDS <= took < MAX_STREAM_SECONDS + 2
    # The thread that read the stream's messages ended with it.
    wait_until(lambda: thread_count(server_pid(process)) <= threads_before, 5, "the stream's threads gone")


def test_envoy_bounds_a_streams_life_below_the_servers_connection_age() -> None:
    """Backstops, in order: the server ends a stream, then Envoy would, then the connection's age."""
    route = route_named(packaged_config(), "grpc_reflection")["route"]
    envoy_limit = float(route["max_stream_duration"]["max_stream_duration"].removesuffix("s"))
    assert MAX_STREAM_SECONDS < envoy_limit < (MAX_CONNECTION_AGE_MS + MAX_CONNECTION_AGE_GRACE_MS) / 1000


@contextmanager
def stalled_calls(port: int, count: int, rest_too: bool = True) -> Iterator[None]:
    """count gRPC calls (on one HTTP/2 connection) whose message never comes, and, rest_too, count
    REST GETs announcing a body that never comes, all held open."""
    rest = http_request_bytes("GET", "/gcd/12/18", {"content-type": "application/json", "content-length": "1000"})
    grpc_connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    grpc_connection.initiate_connection()
    for _ in range(count):
        headers = {":method": "POST", ":scheme": "http", ":authority": "gcd.test", ":path": COMPUTE}
        headers |= {"content-type": "application/grpc", "te": "trailers", "grpc-timeout": "3600S"}
        grpc_connection.send_headers(grpc_connection.get_next_available_stream_id(), list(headers.items()))
    with (
        open_connections(port, count if rest_too else 0, rest),
        socket.create_connection((LOOPBACK, port), timeout=5) as grpc_socket,
    ):
        grpc_socket.sendall(grpc_connection.data_to_send())
        yield


def test_calls_whose_request_never_comes_do_not_reach_the_server_through_envoy(ports: Ports) -> None:
    with stalled_calls(ports.envoy, STALLED_CALLS):
        time.sleep(1)
        during = health_now(ports)
    record(
        f"{STALLED_CALLS} REST and {STALLED_CALLS} gRPC calls whose request never comes, Envoy's port",
        during,
        health_now(ports),
    )
    assert_healthy(during)


def test_calls_whose_message_never_comes_on_the_servers_port_leave_envoy_and_probes_served(ports: Ports) -> None:
    """They hold the worker threads of 3000, which only clients of 3000 share: Envoy and kubelet
    use the sidecar port, with threads of its own."""
    with stalled_calls(ports.grpc, STALLED_CALLS, rest_too=False):
        time.sleep(1)
        during = health_now(ports)
        direct = compute_directly(ports.grpc)
    record(
        f"{STALLED_CALLS} gRPC calls whose message never comes, server's port (a direct Compute meanwhile: {direct})",
        during,
        health_now(ports),
    )
    assert_healthy(during)


def closed_by_peer(connection: socket.socket, wait_seconds: float = 0.5) -> bool:
    """The other side has closed: reading gives end of file or a reset (data is read and dropped);
    wait_seconds 0 asks without waiting."""
    connection.settimeout(wait_seconds)
    try:
        while connection.recv(65536):
            pass
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True
    return True


def test_a_flood_of_idle_connections_to_envoy_leaves_probes_and_metrics_answering(ports: Ports) -> None:
    config = packaged_config()
    idle_seconds = float(connection_manager(config)["common_http_protocol_options"]["idle_timeout"].removesuffix("s"))
    with open_connections(ports.envoy, FLOOD_CONNECTIONS) as flood:
        time.sleep(1)
        during = health_now(ports, rest=False)
        rest_during = status_of(ports.envoy, "/gcd/12/18")
        # The attacker keeps every socket open; Envoy closes the idle ones by itself.
        time.sleep(idle_seconds + 3)
        closed = sum(closed_by_peer(connection) for connection in flood)
        after = health_now(ports)
    record_figure(
        f"{FLOOD_CONNECTIONS} idle connections to Envoy's port (limit {connection_limit(config)}): during",
        f"{during}; REST from a new connection: {rest_during or 'refused'}",
    )
    record_figure(
        f"{FLOOD_CONNECTIONS} idle connections to Envoy's port: closed by Envoy after {idle_seconds + 3:.0f} s", closed
    )
    record_figure(f"{FLOOD_CONNECTIONS} idle connections to Envoy's port: after, sockets still held", after)
    assert_healthy(during, rest=False)
    assert closed == FLOOD_CONNECTIONS
    assert_healthy(after)


def test_a_flood_of_envoys_metrics_port_leaves_the_readiness_path_answering(ports: Ports) -> None:
    """Any pod may reach the metrics port (for Prometheus); kubelet's readiness path is elsewhere."""
    limit = connection_limit(packaged_config(), METRICS_LISTENER)
    with open_connections(ports.envoy_metrics, limit + 36):
        time.sleep(1)
        during = health_now(ports)
    record_figure(f"{limit + 36} idle connections to Envoy's metrics port (limit {limit}): during", during)
    assert during.check == "SERVING" and during.readiness == 200 and during.rest_failed == 0, during


def heap_in_use_and_readiness(ports: Ports, samples: int) -> tuple[int, set[int]]:
    """Envoy's heap in use at its largest, and every answer of the readiness path, over samples
    quarter-second samples."""
    peak, readiness = 0, set()
    for _ in range(samples):
        time.sleep(0.25)
        peak = max(peak, int(json.loads(admin_request(abstract_admin_socket(ports), "/memory"))["allocated"]))
        readiness.add(status_of(ports.envoy_probes, HEALTH_PATH))
    return peak, readiness


def echoed_operand_path(header_bytes: int) -> str:
    """A REST path whose operand is as long as Envoy's header limit lets it be: its 400 names it."""
    return f"/gcd/{'9' * (header_bytes - 1024)}/18"


def test_a_burst_of_every_stream_envoy_allows_keeps_its_heap_under_the_pods_budget(tmp_path: Path) -> None:
    """All the HTTP/2 connections Envoy's port lets a client open, each with all the streams it
    allows in flight, at once (h2load asks for more of both). The overload manager samples the
    heap four times a second, too late for a burst: the connection and stream limits must bound
    it, below the share of Envoy's heap budget (the fixed_heap monitor's maximum, which its
    memory limit is sized by) at which Envoy stops taking requests. heap_size is the heap
    tcmalloc has reserved, what the monitor reads before it subtracts unmapped pages: the
    strictest count. Resident memory is recorded in docs/operations.md, not asserted."""
    config = packaged_config()
    connections = connection_limit(config)
    streams = connection_manager(config)["http2_protocol_options"]["max_concurrent_streams"]
    budget = heap_budget(config)
    refusing = budget * heap_threshold(config, "envoy.overload_actions.stop_accepting_requests")
    body = tmp_path / "compute.bin"
    body.write_bytes(grpc_frame(gcd_pb2.ComputeRequest(a=12, b=18).SerializeToString()))
    with fresh_envoy(tmp_path) as (ports, _):
        # A fresh Envoy: tcmalloc keeps the heap it grew to, so its size afterwards is the peak.
        burst = subprocess.run(
            [
                *("h2load", "-t", "1", "-c", str(connections + 64), "-m", str(4 * streams), "-n", str(BURST_CALLS)),
                *("-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(body)),
                f"http://{LOOPBACK}:{ports.envoy}{COMPUTE}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        memory = json.loads(admin_request(abstract_admin_socket(ports), "/memory"))
    heap = int(memory["heap_size"])
    record_figure(
        f"a burst of {connections + 64} HTTP/2 connections of {4 * streams} streams to Envoy's port (limits "
        f"{connections} and {streams}): Envoy's heap, MiB (budget {budget / 2**20:.0f})",
        f"{heap / 2**20:.0f}",
    )
    assert parse_h2load(burst.stdout).status_2xx > 0, burst.stdout + burst.stderr
    assert heap < refusing


# Requests opened and reset at once on each connection, in one write (CVE-2023-44487's rapid reset).
RAPID_RESETS = 200


def test_a_rapid_reset_on_every_connection_keeps_envoys_heap_under_its_budget(tmp_path: Path) -> None:
    """Every connection Envoy's port allows, each sending request after request and resetting each
    at once. No more than one stream is open at a time, so the stream limit never applies, and
    Envoy decodes a whole read before it frees any of its streams: 128 connections of 200 took its
    heap to 248-330 MiB, of 1,000 to 3.5 GiB. Now Envoy passes one request of a connection per
    turn of its event loop to its filters, and aborts the connection once 10 of its streams (later
    half of them) end in under 2 s without a response, which discards the rest of the read
    (layered_runtime in envoy/envoy.yaml)."""
    config = packaged_config()
    connections = connection_limit(config)
    budget = heap_budget(config)
    refusing = budget * heap_threshold(config, "envoy.overload_actions.stop_accepting_requests")
    with fresh_envoy(tmp_path) as (ports, _):
        wait_until(lambda: status_of(ports.envoy_probes, HEALTH_PATH) == 200, 10, "Envoy ready")
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        for _ in range(RAPID_RESETS):
            stream = client.get_next_available_stream_id()
            # A request whose body is still to come, so that Envoy holds it when the reset comes.
            headers = [(":method", "POST"), (":scheme", "http"), (":authority", "gcd"), (":path", "/gcd/12/18")]
            client.send_headers(stream, [*headers, ("content-length", "10")])
            client.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
        # Made once and sent on every connection at once, so that Envoy reads them in one turn.
        attack = client.data_to_send()
        with ExitStack() as held:
            sockets = [socket.create_connection((LOOPBACK, ports.envoy)) for _ in range(connections)]
            for connection in sockets:
                held.enter_context(connection)
            for connection in sockets:
                connection.sendall(attack)
            time.sleep(1)
        # tcmalloc keeps the heap it grew to: its size now is the peak.
        heap = int(json.loads(admin_request(abstract_admin_socket(ports), "/memory"))["heap_size"])
        after = health_now(ports)
    record_figure(
        f"{connections} HTTP/2 connections each opening and resetting {RAPID_RESETS} requests in one write: "
        f"Envoy's heap (MiB; budget {budget / 2**20:.0f}); after",
        f"{heap / 2**20:.0f}; {after}",
    )
    assert heap < refusing
    assert after.check == "SERVING" and after.readiness == 200 and after.rest_failed == 0, after


# A client's flow-control windows opened as wide as HTTP/2 allows (RFC 9113: 2^31-1).
WIDEST_WINDOW = 2**31 - 1
UNREAD_SECONDS = 4.0


def unread_answers(path: str) -> Callable[[int], Iterator[bytes]]:
    """Whole requests for path, four to a write every 4 ms, from a client that opens its
    flow-control windows as wide as they go and never reads: every answer is Envoy's to hold."""

    # What a fresh HPACK table makes of the request the first time, and every time after: a few
    # bytes of references. Each connection starts a table of its own, so these fit every one.
    encoder = Encoder()
    headers = [(":method", "GET"), (":scheme", "http"), (":authority", "gcd"), (":path", path)]
    first, rest = encoder.encode(headers), encoder.encode(headers)

    def writes(port: int) -> Iterator[bytes]:
        window = frame(SETTINGS, 0, 0, struct.pack(">HI", h2.settings.SettingCodes.INITIAL_WINDOW_SIZE, WIDEST_WINDOW))
        yield window + frame(WINDOW_UPDATE, 0, 0, (WIDEST_WINDOW - 65535).to_bytes(4, "big"))
        for stream in range(1, 2**31 - 8, 8):
            yield b"".join(
                frame(HEADERS, END_HEADERS | END_STREAM, number, first if number == 1 else rest)
                for number in range(stream, stream + 8, 2)
            )
            time.sleep(0.004)

    return writes


@pytest.mark.parametrize("echoed", [False, True], ids=["a small answer", "an answer naming the largest operand"])
def test_clients_that_never_read_their_answers_keep_envoys_heap_under_its_budget(tmp_path: Path, echoed: bool) -> None:
    """Every connection but one of Envoy's port asking for answer after answer it never reads,
    reconnecting whenever Envoy closes it: Envoy's own 404 for a path it does not serve, or the
    400 that names an operand as long as Envoy takes. No stream is reset and each request is
    whole, so neither the stream limit nor the premature-reset check applies, and the overload
    manager's own 503s would pile up the same way: the answers waiting to be written must be
    bounded per connection (max_outbound_frames in envoy/envoy.yaml). Envoy's default of 10,000
    frames let 63 such connections hold 77 MiB of small answers, or 644 MiB of answers naming a
    15 KiB operand, with readiness 503 throughout."""
    config = packaged_config()
    connections = connection_limit(config) - 1
    header_bytes = connection_manager(config).get("max_request_headers_kb", ENVOY_DEFAULT_HEADERS_KB) * 1024
    path = echoed_operand_path(header_bytes) if echoed else "/not-served"
    budget = heap_budget(config)
    with fresh_envoy(tmp_path) as (ports, _):
        wait_until(lambda: status_of(ports.envoy_probes, HEALTH_PATH) == 200, 10, "Envoy ready")
        writes = unread_answers(path)
        until = time.monotonic() + UNREAD_SECONDS
        # Never acknowledging Envoy's SETTINGS keeps its stream limit from applying, and a small
        # receive buffer keeps the answers in Envoy.
        options = {"acknowledges": False, "receive_buffer": 4096}
        threads = [
            threading.Thread(target=attacker, args=(ports.envoy, writes, until), kwargs=options)
            for _ in range(connections)
        ]
        for thread in threads:
            thread.start()
        peak, readiness = heap_in_use_and_readiness(ports, int(UNREAD_SECONDS / 0.25))
        for thread in threads:
            thread.join(UNREAD_SECONDS + 5)
        after = health_now(ports)
    record_figure(
        f"{connections} HTTP/2 connections asking for answers they never read ({'an operand' if echoed else 'a path'} "
        f"of {len(path)} bytes), for {UNREAD_SECONDS:.0f} s: Envoy's peak heap in use (MiB; budget "
        f"{budget / 2**20:.0f}), readiness; after",
        f"{peak / 2**20:.0f}, {sorted(readiness)}; {after}",
    )
    assert readiness == {200}
    assert after.check == "SERVING" and after.readiness == 200 and after.rest_failed == 0, after
    assert peak < budget * heap_threshold(config, "envoy.overload_actions.shrink_heap")


def test_a_slow_reader_with_the_widest_windows_gets_the_largest_files_whole(stack_ports: Ports) -> None:
    """The other side of max_outbound_frames: a client that opens its windows as wide as the
    unread-answer attack does, but reads, slowly (4 KiB at a time, 2 ms apart, through a 4 KiB
    receive buffer), gets every stream's file whole, the largest ones all at once, and keeps its
    connection: Envoy queues a file's frames only as fast as the client takes them."""
    config = packaged_config()
    streams = connection_manager(config)["http2_protocol_options"]["max_concurrent_streams"]
    sizes = {
        path: installed_file(route["direct_response"]["body"]["filename"]).stat().st_size
        for path, route in file_routes(config).items()
    }
    largest = sorted(sizes, key=sizes.__getitem__, reverse=True)[:streams]
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WIDEST_WINDOW}
    )
    client.initiate_connection()
    client.increment_flow_control_window(WIDEST_WINDOW - 65535)
    received = {}
    for path in largest:
        stream = client.get_next_available_stream_id()
        received[stream] = (path, bytearray())
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", "gcd"), (":path", path)]
        client.send_headers(stream, headers, end_stream=True)
    ended: set[int] = set()
    with socket.socket() as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        connection.settimeout(10)
        connection.connect((LOOPBACK, stack_ports.envoy))
        connection.sendall(client.data_to_send())
        deadline = time.monotonic() + 60
        while ended != received.keys() and time.monotonic() < deadline:
            data = connection.recv(4096)
            assert data, f"Envoy closed the connection with {len(ended)} of {len(received)} files whole"
            for event in client.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    received[event.stream_id][1].extend(event.data)
                    client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    pytest.fail(f"{received[event.stream_id][0]} was reset")
            connection.sendall(client.data_to_send())
            time.sleep(0.002)
    assert {path: len(body) for path, body in received.values()} == {path: sizes[path] for path in largest}


# Envoy's own limit on a request's headers where its config sets none (Envoy's docs, HttpConnectionManager).
ENVOY_DEFAULT_HEADERS_KB = 60
HEADER_VALUE = "x" * 4000


@dataclass(frozen=True)
class LargeRequest:
    """A request as large as Envoy's port takes, sent on every stream of every connection."""

    headers: Callable[[int], list[tuple[str, str]]]  # given how many bytes of headers Envoy takes
    ends: bool  # whether the request is whole
    reads: bool  # whether the client reads the answer
    described: str


BASE_GET = [(":method", "GET"), (":scheme", "http"), (":authority", "gcd")]
LARGE_REQUESTS = [
    # Envoy holds the request until request_timeout, waiting for the body it announces.
    LargeRequest(
        lambda size: (
            [*BASE_GET, (":path", "/gcd/12/18"), ("content-length", "100")]
            + [("x-pad", HEADER_VALUE)] * ((size - 1024) // len(HEADER_VALUE))
        ),
        ends=False,
        reads=True,
        described="headers and a body that never comes",
    ),
    # The 400 names the operand, so the answer is as large, and Envoy holds it for a client that
    # reads nothing.
    LargeRequest(
        lambda size: [*BASE_GET, (":path", echoed_operand_path(size))],
        ends=True,
        reads=False,
        described="operand in the path and its 400 never read",
    ),
]


@pytest.mark.parametrize("large", LARGE_REQUESTS, ids=[large.described for large in LARGE_REQUESTS])
def test_the_largest_requests_on_every_stream_keep_envoys_heap_under_its_budget(
    tmp_path: Path, large: LargeRequest
) -> None:
    """Every connection but one of Envoy's port, each with every stream it allows, each request as
    large as Envoy takes. HPACK lets a client send its headers as references to one entry of its
    table, a few hundred bytes on the wire for each stream's kilobytes in Envoy."""
    config = packaged_config()
    connections = connection_limit(config) - 1
    manager = connection_manager(config)
    streams = manager["http2_protocol_options"]["max_concurrent_streams"]
    header_bytes = manager.get("max_request_headers_kb", ENVOY_DEFAULT_HEADERS_KB) * 1024
    headers = large.headers(header_bytes)
    size = sum(len(name) + len(value) for name, value in headers)
    budget = heap_budget(config)
    with fresh_envoy(tmp_path) as (ports, _), ExitStack() as held:
        wait_until(lambda: status_of(ports.envoy_probes, HEALTH_PATH) == 200, 10, "Envoy ready")
        for _ in range(connections):
            connection = held.enter_context(socket.create_connection((LOOPBACK, ports.envoy)))
            if large.reads:
                client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
                client.initiate_connection()
            else:
                client = non_reading_client()
            for _ in range(streams):
                client.send_headers(client.get_next_available_stream_id(), headers, end_stream=large.ends)
            connection.sendall(client.data_to_send())
        peak, readiness = heap_in_use_and_readiness(ports, UNREAD_SAMPLES)
        rest = {status_of(ports.envoy, "/gcd/12/18")}
    record_figure(
        f"{connections} HTTP/2 connections of {streams} streams, each with {size // 1024} KiB of "
        f"{large.described}: Envoy's peak heap in use (MiB; budget {budget / 2**20:.0f}), readiness, REST",
        f"{peak / 2**20:.0f}; {sorted(readiness)}; {sorted(rest)}",
    )
    assert readiness == {200} and rest == {200}
    # Not even where Envoy starts returning free memory to the system.
    assert peak < budget * heap_threshold(config, "envoy.overload_actions.shrink_heap")


def unread_requests(port: int, path: str, protocol: str, streams: int) -> socket.socket:
    """A connection that asks for path and never reads the answer: over HTTP/2, streams of them
    with a flow-control window of 0; over HTTP/1.1, one, with the smallest receive buffer."""
    connection = socket.socket()
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    connection.connect((LOOPBACK, port))
    if protocol == "HTTP/1.1":
        connection.sendall(http_request_bytes("GET", path))
        return connection
    client = non_reading_client()
    for _ in range(streams):
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", "gcd"), (":path", path)]
        client.send_headers(client.get_next_available_stream_id(), headers, end_stream=True)
    connection.sendall(client.data_to_send())
    return connection


def kernel_send_queue_bytes(port: int) -> int:
    """What the kernel holds, unsent or unacknowledged, for the connections accepted on port:
    memory charged to the container that accepted them (cgroup v2's sock)."""
    listing = subprocess.run(
        ["ss", "-tmnH", "state", "established", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return sum(int(queued) for queued in re.findall(r"\bw(\d+)", listing))


@pytest.mark.skipif(KUBECTL is None, reason="kubectl with built-in kustomize is not installed")
@pytest.mark.parametrize("protocol", ["HTTP/2", "HTTP/1.1"])
def test_unread_answers_of_the_largest_file_keep_envoy_under_its_memory_limit(tmp_path: Path, protocol: str) -> None:
    """Every connection Envoy's port allows but one (for REST), each with every stream it
    allows, asking for the largest file and never reading it. Envoy sends only a few files at once and reads each only
    as fast as its client takes it, so neither its memory nor the kernel's buffers for its
    sockets grow with the attack; meanwhile REST is served, and the page is again once it stops."""
    config = packaged_config()
    path, size = max(
        (
            (path, installed_file(route["direct_response"]["body"]["filename"]).stat().st_size)
            for path, route in file_routes(config).items()
        ),
        key=lambda each: each[1],
    )
    connections = connection_limit(config) - 1
    streams = connection_manager(config)["http2_protocol_options"]["max_concurrent_streams"]
    limit = memory_limit_bytes(render("pi"), "envoy")
    with fresh_envoy(tmp_path) as (ports, envoy):
        with ExitStack() as held:
            peak = resident_bytes(envoy.pid)
            for _ in range(connections):
                held.enter_context(unread_requests(ports.envoy, path, protocol, streams))
                peak = max(peak, resident_bytes(envoy.pid))
            for _ in range(UNREAD_SAMPLES):
                time.sleep(0.25)
                peak = max(peak, resident_bytes(envoy.pid))
            kernel = kernel_send_queue_bytes(ports.envoy)
            rest = http_request(ports.envoy, "/gcd/12/18").status
        label = (
            f"{connections} {protocol} connections{f' of {streams} streams' if protocol == 'HTTP/2' else ''} "
            f"asking for {path} ({size / 2**20:.1f} MB), never reading"
        )
        record_figure(
            f"{label}: Envoy's peak resident memory and its sockets' send queues (MiB; limit "
            f"{limit / 2**20:.0f}); REST during",
            f"{peak / 2**20:.0f} and {kernel / 2**20:.1f}; {rest}",
        )
        assert rest == 200
        assert peak + kernel < limit
        page_again = wait_until(lambda: http_request(ports.envoy, path).status == 200, 15, f"{path} served")
    record_figure(f"{label}: the file served again after (s)", f"{page_again:.1f}")


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


@pytest.mark.parametrize(
    ("kind", "first_bytes", "limit_ms"),
    [("silent TCP", b"", HANDSHAKE_TIMEOUT_MS), ("HTTP/2 without a call", PREFACE, MAX_CONNECTION_IDLE_MS)],
)
def test_idle_connections_to_the_server_are_closed_by_it(
    ports: Ports, kind: str, first_bytes: bytes, limit_ms: int
) -> None:
    with open_connections(ports.grpc, MAX_CONNECTIONS, first_bytes) as flood:
        time.sleep(limit_ms / 1000 + 3)
        closed = sum(closed_by_peer(connection) for connection in flood)
        during = health_now(ports)
    record_figure(
        f"{len(flood)} {kind} connections to the server's port: closed by it within {limit_ms / 1000 + 3:.0f} s",
        closed,
    )
    assert closed == len(flood)
    assert_healthy(during)


def test_a_flood_of_connections_to_the_servers_port_is_capped_and_leaves_envoy_and_probes_served(
    stack: tuple[Ports, subprocess.Popen[bytes]],
) -> None:
    """Any pod may open connections to 3000; beyond the server's cap each is closed as it comes,
    so the flood's memory is bounded, and Envoy and kubelet, on the sidecar port, are served."""
    ports, process = stack
    server = server_pid(process)
    before = resident_bytes(server)
    with open_connections(ports.grpc, 4 * MAX_CONNECTIONS, PREFACE) as flood:
        time.sleep(1)
        grown = resident_bytes(server) - before
        during = health_now(ports)
        closed = sum(closed_by_peer(connection, wait_seconds=0) for connection in flood)
    after = health_now(ports)
    label = f"{len(flood)} HTTP/2 connections to the server's port (cap {MAX_CONNECTIONS})"
    record_figure(f"{label}: closed at once, its memory grew (MiB)", f"{closed}, {grown / 2**20:.1f}")
    record(label, during, after)
    assert closed == len(flood) - MAX_CONNECTIONS
    assert_healthy(during)
    assert_healthy(after)


def test_a_flood_of_idle_connections_to_the_servers_metrics_costs_it_no_memory(
    stack: tuple[Ports, subprocess.Popen[bytes]],
) -> None:
    ports, process = stack
    pid = server_pid(process)
    before = resident_bytes(pid)
    with open_connections(ports.metrics, 2000):
        time.sleep(1)
        grown_mib = (resident_bytes(pid) - before) / 2**20
        threads = thread_count(pid)
        time.sleep(METRICS_IDLE_SECONDS + 1)
        after = health_now(ports)
    record_figure(
        "2000 idle connections to the server's metrics port: its memory grew (MiB), threads",
        f"{grown_mib:.1f}, {threads}",
    )
    # prometheus_client's own server took a thread each: 2000 threads and 50 MiB.
    assert threads < 50
    assert grown_mib < 10
    assert_healthy(after)


def test_huge_headers_dribbled_to_the_servers_metrics_port_cost_it_no_memory(
    stack: tuple[Ports, subprocess.Popen[bytes]],
) -> None:
    """http.server would keep 100 header lines of 64 KiB per request, for as long as the client
    dribbles a byte now and then: 16 such connections took the server past 100 MiB."""
    ports, process = stack
    pid = server_pid(process)
    before = resident_bytes(pid)
    lines = b"".join(b"X-%02d: " % i + b"a" * 65000 + b"\r\n" for i in range(99))
    with open_connections(ports.metrics, METRICS_MAX_CONNECTIONS) as hoard:
        for connection in hoard:
            with suppress(OSError):  # the server may have given up on the request already
                connection.sendall(b"GET /metrics HTTP/1.1\r\n" + lines)
        time.sleep(1)
        grown_mib = (resident_bytes(pid) - before) / 2**20
        time.sleep(METRICS_IDLE_SECONDS + 1)
        after = health_now(ports)
    record_figure(
        f"{METRICS_MAX_CONNECTIONS} requests of 6 MiB of headers to the server's metrics port: its memory grew (MiB)",
        f"{grown_mib:.1f}",
    )
    assert grown_mib < 10
    assert_healthy(after)


def test_envoy_listens_on_its_three_ports_and_no_admin_port(stack: tuple[Ports, subprocess.Popen[bytes]]) -> None:
    ports, process = stack
    assert listening_tcp_ports(envoy_pid(process)) == {ports.envoy, ports.envoy_metrics, ports.envoy_probes}


@pytest.mark.parametrize("path", [WATCH, "/grpc.health.v1.Health/Check", "/grpc.channelz.v1.Channelz/GetServers"])
def test_other_services_are_refused_on_envoys_port_with_a_status(ports: Ports, path: str) -> None:
    """As native gRPC (never reaching the server), and as REST."""
    with grpc.insecure_channel(f"{LOOPBACK}:{ports.envoy}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(path)
        with pytest.raises(grpc.RpcError) as refused:
            call(health_pb2.HealthCheckRequest(service=SERVICE_NAME).SerializeToString(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert refused.value.details() == "this port serves gcd.v1.GCDService only"
    rest = http_request(ports.envoy, path)
    assert rest.status == 404 and rest.json()["code"] == 5


def test_a_malformed_http2_request_resets_its_stream_not_the_connection(ports: Ports) -> None:
    config = h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False
    )
    connection = h2.connection.H2Connection(config)
    connection.initiate_connection()
    base = [(":method", "GET"), (":scheme", "http"), (":authority", "gcd.test"), (":path", "/gcd/12/18")]
    connection.send_headers(1, [*base, ("X-Upper-Case", "1")], end_stream=True)
    connection.send_headers(3, base, end_stream=True)
    events: list[object] = []
    with socket.create_connection((LOOPBACK, ports.envoy), timeout=5) as sock:
        sock.sendall(connection.data_to_send())
        while not any(isinstance(event, h2.events.StreamEnded) and event.stream_id == 3 for event in events):
            data = sock.recv(65536)
            if not data:
                break
            events += connection.receive_data(data)
            sock.sendall(connection.data_to_send())
    assert any(isinstance(event, h2.events.StreamReset) and event.stream_id == 1 for event in events), events
    answered = [event for event in events if isinstance(event, h2.events.ResponseReceived) and event.stream_id == 3]
    assert answered and dict(answered[0].headers)[b":status"] == b"200", events
