"""Command-line flags and environment variables of gcd-server, with their defaults."""

import argparse
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

DEFAULT_PORT = 3000
# Prometheus metrics of the RPCs (grpc_server_handled_total, ...) and of the process.
DEFAULT_METRICS_PORT = 9103
# Every interface, IPv6 and IPv4 alike: the pod IP is what kubelet probes and Envoy dials.
DEFAULT_HOST = "[::]"
# Kubernetes waits 30 s by default before SIGKILL; a GCD takes microseconds, so 5 s is ample.
DEFAULT_GRACE_SECONDS = 5.0
DEFAULT_LOG_LEVEL = "INFO"
# RPCs in progress at once, the rest answered RESOURCE_EXHAUSTED (HTTP 429 through Envoy) rather
# than queued without bound. Each takes microseconds, so 100 is a deep queue already.
DEFAULT_MAX_CONCURRENT_RPCS = 100
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    grace_seconds: float
    log_level: str
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS
    envoy_admin: str | None = None
    metrics_port: int = 0
    sidecar_port: int = 0
    client_drain_seconds: float = 0.0

    @property
    def address(self) -> str:
        return host_port(self.host, self.port)


def host_port(host: str, port: int) -> str:
    """host:port, with an IPv6 host in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def port_number(text: str) -> int:
    if not (text.isdigit() and 1 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


def port_or_zero(text: str) -> int:
    return 0 if text == "0" else port_number(text)


def positive_count(text: str) -> int:
    if not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def unix_socket(text: str) -> str:
    if not text.startswith(("/", "@")):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a unix socket: an absolute path, or @name for an abstract one"
        )
    return text


def grace_seconds(text: str) -> float:
    try:
        seconds = float(text)
        valid = 0 <= seconds < math.inf
    except ValueError:
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return seconds


def log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="gcd-server",
        description="Serve gcd.v1.GCDService over gRPC, with grpc.health.v1 health checking and "
        "server reflection. Stops gracefully on SIGTERM or SIGINT.",
        epilog="Each flag may also be set by the environment variable named in its help; "
        "a flag on the command line wins.",
    )
    options: list[tuple[str, str, Callable[[str], object], object, str]] = [
        ("--host", "GCD_HOST", str, DEFAULT_HOST, "address to bind; [::] means every interface"),
        ("--port", "GCD_PORT", port_number, DEFAULT_PORT, "TCP port to serve gRPC on"),
        (
            "--metrics-port",
            "GCD_METRICS_PORT",
            port_or_zero,
            DEFAULT_METRICS_PORT,
            "TCP port for Prometheus metrics at /metrics, on the same host; 0 turns them off",
        ),
        (
            "--sidecar-port",
            "GCD_SIDECAR_PORT",
            port_or_zero,
            0,
            "a second TCP port, with threads of its own, for the Envoy in front and kubelet's probes, "
            "so that no client of --port can starve them; 0 means none",
        ),
        (
            "--grace",
            "GCD_GRACE_SECONDS",
            grace_seconds,
            DEFAULT_GRACE_SECONDS,
            "seconds that in-flight RPCs get to finish after SIGTERM or SIGINT",
        ),
        (
            "--client-drain",
            "GCD_CLIENT_DRAIN_SECONDS",
            grace_seconds,
            0.0,
            "after SIGTERM, seconds to keep serving the clients of --port until each connection has "
            "reached its age and gone (clients then move to other pods; a call racing a stop could "
            "get CANCELLED), before new RPCs are refused; 0 stops at once",
        ),
        ("--log-level", "GCD_LOG_LEVEL", log_level, DEFAULT_LOG_LEVEL, "one of " + ", ".join(LOG_LEVELS)),
        (
            "--max-concurrent-rpcs",
            "GCD_MAX_CONCURRENT_RPCS",
            positive_count,
            DEFAULT_MAX_CONCURRENT_RPCS,
            "RPCs served at once; more are answered RESOURCE_EXHAUSTED",
        ),
        (
            "--envoy-admin",
            "GCD_ENVOY_ADMIN",
            unix_socket,
            None,
            "unix socket of the admin API of an Envoy in front of this server (@name: an abstract "
            "socket), drained on SIGTERM before the server stops",
        ),
    ]
    for flag, env_var, convert, default, text in options:
        from_env = os.environ.get(env_var)
        if from_env is not None:
            try:
                default = convert(from_env)
            except argparse.ArgumentTypeError as error:
                parser.error(f"environment variable {env_var}={from_env!r}: {error}")
        parser.add_argument(flag, type=convert, default=default, help=f"{text} (env {env_var}; default: %(default)s)")
    args = parser.parse_args(argv)
    return Settings(
        host=args.host,
        port=args.port,
        grace_seconds=args.grace,
        log_level=args.log_level,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        envoy_admin=args.envoy_admin,
        metrics_port=args.metrics_port,
        sidecar_port=args.sidecar_port,
        client_drain_seconds=args.client_drain,
    )


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line, in the style of Envoy's access log: what log collectors parse."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    """JSON lines on stderr. No log line is written per request at any level but DEBUG."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLineFormatter())
    logging.basicConfig(level=level, handlers=[handler])
