"""gcd-server: builds the gRPC server, serves until SIGTERM or SIGINT, then drains and exits 0."""

import logging
import sys
import time
from collections.abc import Sequence
from concurrent import futures
from importlib.metadata import version

import grpc
from grpc_health.v1 import health, health_pb2

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_server.connections import wait_for_clients_to_leave
from gcd_server.envoy_sidecar import EnvoySidecar
from gcd_server.metrics import RpcMetrics, serve_metrics
from gcd_server.reflection import enable_reflection
from gcd_server.servicer import GCDServicer
from gcd_server.settings import Settings, configure_logging, host_port, parse_settings
from gcd_server.stop_signal import StopSignal
from gcd_server.streams import StreamSlots

SERVICE_NAME = gcd_pb2.DESCRIPTOR.services_by_name["GCDService"].full_name
VERSION = version("gcd-service")

# A synchronous server: measured on these machines it serves ~5.5k small unary calls/s per core
# against ~3.3k for grpc.aio. A GCD never waits on I/O, so a few threads keep a core busy: 4 served
# as many requests/s as 8 with a lower p99 and less memory (bench/README.md).
_WORKER_THREADS = 4
# Streams (server reflection) hold a thread for their whole life; they get half the threads at
# most, so that unary calls always have the other half (gcd_server/streams.py).
MAX_CONCURRENT_STREAMS = _WORKER_THREADS // 2
# grpcurl's reflection calls take milliseconds.
MAX_STREAM_SECONDS = 5.0
# The largest request any service here takes (a reflection lookup by name) is well under 1 KiB;
# grpc's default would let each call make the server allocate up to 4 MiB.
MAX_RECEIVE_MESSAGE_BYTES = 4096
# Envoy pings its upstream connection every 30 s (envoy/envoy.yaml); pings at up to this rate are
# welcome even on an idle connection, so the server never answers them with GOAWAY.
MIN_CLIENT_PING_INTERVAL_MS = 10_000
# Envoy accepts request headers up to 60 KiB and forwards the REST path twice (:path, and
# x-envoy-original-path for its access log); grpc's default limit is 8-16 KiB.
MAX_METADATA_BYTES = 128 * 1024
# Every connection, Envoy's included, is told to go away (GOAWAY) once this old, and closed once
# the grace is over too, cancelling what still runs on it: no stream outlives its connection by
# much. Clients reconnect and, for Envoy, retry (envoy/envoy.yaml's REST retry policy).
MAX_CONNECTION_AGE_MS = 30_000
MAX_CONNECTION_AGE_GRACE_MS = 5_000
# A connection with no RPC in flight for this long is closed: idle ones cost about 14 KiB each.
# Envoy's health check keeps its own busy every 2 s.
MAX_CONNECTION_IDLE_MS = 10_000
# A connection must have spoken HTTP/2 within this long (grpc's default is two minutes); the
# same time Envoy gives a client to send its request headers.
HANDSHAKE_TIMEOUT_MS = 10_000
# Connections open at once on each port (grpc's default is no limit); one beyond is closed as it
# arrives, and its client gets UNAVAILABLE. An idle one costs the server 14-23 KiB, one that
# floods it with cancelled streams (a rapid reset) about 0.75 MiB. A client process keeps one
# connection to each pod it calls, Envoy one or two to the sidecar port, kubelet one per probe;
# a flood of the main port, which every pod may reach, leaves the sidecar port's own.
MAX_CONNECTIONS = 64
# Streams at once on one connection of the main port. A rapid reset's cost grows with it: 32
# connections of 200 streams took the server to 133-177 MiB, of 16 to under 70. A client with more
# calls in flight on one connection queues the rest on its side. Streams that have just ended
# still count against it until freed, so the same number of them is allowed on top, or honest
# clients at the limit get REFUSED_STREAM (UNAVAILABLE).
MAX_STREAMS_PER_CONNECTION = 16
# grpc grows a connection's read buffer each time a read fills it, with no ceiling of its own
# (grpc/grpc#42194): a request whose headers never end (a CONTINUATION flood) took the server past
# 200 MiB in 4 s from 8 connections. No message or header block here comes near 64 KiB.
MAX_READ_BUFFER_BYTES = 65536
_SERVER_OPTIONS = [
    # grpc enables SO_REUSEPORT by default, so a second server on a busy port would bind
    # silently and split the traffic; without it the second bind fails at start.
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    ("grpc.max_metadata_size", MAX_METADATA_BYTES),
    ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
    ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
    ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
    ("grpc.max_connection_idle_ms", MAX_CONNECTION_IDLE_MS),
    ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
    ("grpc.max_allowed_incoming_connections", MAX_CONNECTIONS),
    ("grpc.experimental.tcp_max_read_buffer_size", MAX_READ_BUFFER_BYTES),
    # grpc's bandwidth-delay probing grows the flow-control windows it grants a client, and the
    # data a client sends within them is buffered whether or not a handler reads it: a client
    # sending reflection requests on two streams it never read from took the server from 45 to
    # 138 MiB in 8 s, and none of it was read. With probing off, a stream's window stays at
    # HTTP/2's default 65,535 bytes until a receive is pending (grpc/grpc
    # src/core/ext/transport/chttp2/transport/flow_control.cc); messages here are a few bytes.
    ("grpc.http2.bdp_probe", 0),
]

log = logging.getLogger("gcd_server")


class PortInUseError(RuntimeError):
    pass


def add_health_check(server: grpc.Server, health_servicer: health.HealthServicer) -> None:
    """grpc.health.v1.Health/Check, and not Watch. Kubelet's gRPC probe and Envoy's health check
    ask Check only. grpcio-health-checking's Watch sends its first reply while holding the
    servicer's lock, and a few dozen Watch calls cancelled after that reply deadlock the whole
    servicer, Check and the shutdown included (grpc/grpc PR #43403); unserved, Watch is
    UNIMPLEMENTED."""
    check = grpc.unary_unary_rpc_method_handler(
        health_servicer.Check,
        request_deserializer=health_pb2.HealthCheckRequest.FromString,
        response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(health.SERVICE_NAME, {"Check": check}),))


def _listener(
    settings: Settings, address: str, health_servicer: health.HealthServicer, streams_per_connection: int
) -> grpc.Server:
    """Every service, bound to address, on worker threads of its own: a client that holds a
    listener's threads (calls whose message never comes) starves that listener alone."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=_WORKER_THREADS),
        options=[
            *_SERVER_OPTIONS,
            ("grpc.max_concurrent_streams", streams_per_connection),
            ("grpc.http2.max_deallocating_streams", streams_per_connection),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        # Counting costs a few microseconds a call: only where the metrics can be read.
        interceptors=[RpcMetrics()] if settings.metrics_port else [],
    )
    gcd_pb2_grpc.add_GCDServiceServicer_to_server(GCDServicer(), server)
    add_health_check(server, health_servicer)
    enable_reflection(
        server, (SERVICE_NAME, health.SERVICE_NAME), StreamSlots(MAX_CONCURRENT_STREAMS, MAX_STREAM_SECONDS)
    )
    try:
        server.add_insecure_port(address)
    except RuntimeError as error:
        raise PortInUseError(cannot_listen(address)) from error
    return server


def build_server(settings: Settings) -> tuple[grpc.Server, health.HealthServicer]:
    """The GCD service, health (all SERVING) and reflection on settings.address, bound but not
    yet started."""
    health_servicer = health.HealthServicer()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return _listener(settings, settings.address, health_servicer, MAX_STREAMS_PER_CONNECTION), health_servicer


def build_sidecar_server(settings: Settings, health_servicer: health.HealthServicer) -> grpc.Server | None:
    """The same services on settings.sidecar_port, for the Envoy beside this server and kubelet's
    probes, whose threads no client of the main port can take; None without a sidecar port."""
    if not settings.sidecar_port:
        return None
    # Envoy sends all its calls over one connection: as many streams as the server takes RPCs,
    # and as many again, so that a call beyond that limit is answered RESOURCE_EXHAUSTED (HTTP
    # 429) rather than left queueing in Envoy.
    sidecar = host_port(settings.host, settings.sidecar_port)
    return _listener(settings, sidecar, health_servicer, 2 * settings.max_concurrent_rpcs)


def cannot_listen(address: str) -> str:
    return f"cannot listen on {address}: the port is in use or the address is not local"


def start_metrics(settings: Settings) -> None:
    if not settings.metrics_port:
        return
    try:
        serve_metrics(settings.host, settings.metrics_port)
    except OSError as error:
        raise PortInUseError(cannot_listen(host_port(settings.host, settings.metrics_port))) from error


def serve(settings: Settings) -> None:
    """Serves until SIGTERM or SIGINT, then refuses new RPCs and lets in-flight ones finish."""
    server, health_servicer = build_server(settings)
    sidecar_server = build_sidecar_server(settings, health_servicer)
    servers = [server, *([sidecar_server] if sidecar_server else [])]
    start_metrics(settings)
    stop_signal = StopSignal()

    envoy = EnvoySidecar(settings.envoy_admin) if settings.envoy_admin else None
    for each in servers:
        each.start()
    if envoy:
        envoy.readmit_in_background()
    sidecar = f", for its sidecar and probes on port {settings.sidecar_port}" if sidecar_server else ""
    metrics = f", metrics on port {settings.metrics_port}" if settings.metrics_port else ""
    log.info("gcd-server %s serving %s on %s%s%s", VERSION, SERVICE_NAME, settings.address, sidecar, metrics)
    stop_signal.wait()

    drain(servers, health_servicer, settings.grace_seconds, envoy, (settings.port, settings.client_drain_seconds))
    log.info("stopped")


def drain(
    servers: list[grpc.Server],
    health_servicer: health.HealthServicer,
    grace_seconds: float,
    envoy: EnvoySidecar | None = None,
    client_drain: tuple[int, float] = (0, 0.0),
) -> None:
    """Health turns NOT_SERVING; the Envoy in front, if any, sends its clients elsewhere, and the
    clients of client_drain's port leave as their connections reach their age (for up to its
    seconds, counted from this call); then new RPCs are refused and in-flight ones get
    grace_seconds to finish before this returns.

    Why wait for those clients: grpc cancels the calls that have reached a stopping server but
    not yet its handler (grpc/grpc#41785, open), and their clients get CANCELLED, which they do
    not retry. A connection that reaches its age ends gracefully, with GOAWAY, while the server
    still serves; by then the pod has left its Services, so the client reconnects elsewhere."""
    started = time.monotonic()
    health_servicer.enter_graceful_shutdown()
    if envoy:
        envoy.drain()
    port, seconds = client_drain
    if seconds:
        wait_for_clients_to_leave(port, seconds - (time.monotonic() - started))
    log.info("stopping: new RPCs refused, in-flight RPCs get %.1fs to finish", grace_seconds)
    for stopped in [server.stop(grace_seconds) for server in servers]:
        stopped.wait()


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    configure_logging(settings.log_level)
    try:
        serve(settings)
    except PortInUseError as error:
        log.error("%s", error)
        sys.exit(1)
