"""What reconnecting costs, the price of the connection age that spreads long-lived clients over
new pods (docs/deploy.md): REST through Envoy at saturation with client connections that live
for ever, as shipped (30 s), and thirty times shorter (1 s), interleaved; and gcd-server's CPU
for a call on a new connection against a call on an open one.

    .tox/bench/bin/python bench/reconnect_cost.py     (the bench env of tox; the tools run.py needs)

wrk reconnects when Envoy answers Connection: close, so it drives the REST side. h2load does
not reconnect after a GOAWAY, so the gRPC side is a client that opens a connection per call,
and only the server's CPU is counted. Writes bench/reconnect-cost.md. Placement is run.py's."""

import functools
import statistics
import subprocess
from contextlib import ExitStack
from pathlib import Path

import grpc
import yaml

from gcd.v1 import gcd_pb2_grpc
from gcd_server.app import MAX_CONNECTION_AGE_MS
from gcd_stack.envoy_config import LOOPBACK, connection_manager, local_config, packaged_config
from gcd_stack.ports import Ports
from gcd_stack.processes import health_url, running, server_is_serving, url_answers_ok, wait_until_ready
from gcd_testing.ports import free_ports
from gcd_testing.proc import cpu_seconds
from gcd_testing.tool_output import parse_wrk

import run

SHIPPED_AGE_SECONDS = MAX_CONNECTION_AGE_MS / 1000
SHORT_AGE_SECONDS = 1
# wrk's connections, each of which reconnects once per age.
CONNECTIONS = 16
# Envoy's max_connection_duration for each arm; None: no limit.
AGES: dict[str, str | None] = {
    "no limit": None,
    f"{SHIPPED_AGE_SECONDS:.0f} s (as shipped)": f"{SHIPPED_AGE_SECONDS:.0f}s",
    f"{SHORT_AGE_SECONDS} s": f"{SHORT_AGE_SECONDS}s",
}
CALLS = 2000
# A pod's clients, for the scaled figure: more than a home cluster has.
CLIENTS = 100


def envoy_config(path: Path, ports: Ports, duration: str | None) -> None:
    """The pod's Envoy config for ports, with the given connection age."""
    config = local_config(packaged_config(), ports)
    options = connection_manager(config)["common_http_protocol_options"]
    if duration is None:
        options.pop("max_connection_duration")
    else:
        options["max_connection_duration"] = duration
    path.write_text(yaml.safe_dump(config))


def wrk(port: int, seconds: int) -> tuple[float, float]:
    """Requests/s and p99 (ms) of a saturating wrk run of GET /gcd/12/18 on port."""
    command = [
        "wrk",
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "--latency",
        f"http://{LOOPBACK}:{port}{run.REST_PATH}",
    ]
    result = subprocess.run(run.pinned(run.CPU_REST, command), capture_output=True, text=True)
    summary = parse_wrk(result.stdout + result.stderr)
    if result.returncode != 0 or summary.non_2xx or summary.p99_ms is None:
        raise RuntimeError(f"wrk on port {port} failed: {summary}\n{result.stdout}{result.stderr}")
    return summary.requests_per_second, summary.p99_ms


def server_cpu_us_per_call(server_pid: int, port: int, new_connection_each: bool) -> float:
    """gcd-server's CPU per Compute call, each on a connection of its own or all on one."""
    target = f"{LOOPBACK}:{port}"
    calls = CALLS // 4 if new_connection_each else CALLS
    before = cpu_seconds(server_pid)
    with grpc.insecure_channel(target) as shared:
        for _ in range(calls):
            if new_connection_each:
                with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as own:
                    gcd_pb2_grpc.GCDServiceStub(own).Compute(run.REQUEST, timeout=5)
            else:
                gcd_pb2_grpc.GCDServiceStub(shared).Compute(run.REQUEST, timeout=5)
    return (cpu_seconds(server_pid) - before) * 1e6 / calls


def reconnect_cost(workdir: Path, rounds: int, seconds: int) -> str:
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in AGES}
    grpc_costs: list[tuple[float, float]] = []
    with ExitStack() as stack:
        stacks: dict[str, tuple[Ports, dict[str, int]]] = {}
        for index, (name, duration) in enumerate(AGES.items()):
            ports = free_ports()
            server = stack.enter_context(
                running(run.pinned_server(ports.grpc, 0, ports.sidecar), workdir / f"server-{index}.log")
            )
            wait_until_ready(functools.partial(server_is_serving, ports.grpc), server, f"gcd-server ({name})")
            config = workdir / f"envoy-{index}.yaml"
            envoy_config(config, ports, duration)
            envoy = stack.enter_context(running(run.pinned_envoy(config), workdir / f"envoy-{index}.log"))
            wait_until_ready(functools.partial(url_answers_ok, health_url(ports)), envoy, f"Envoy ({name})")
            stacks[name] = (ports, {"server": server.pid, "envoy": envoy.pid})
            wrk(ports.envoy, 1)  # warm-up, untimed
        for _ in range(rounds):
            for name, (ports, pids) in stacks.items():
                before = sum(cpu_seconds(pid) for pid in pids.values())
                rate, p99 = wrk(ports.envoy, seconds)
                cpu_us = (sum(cpu_seconds(pid) for pid in pids.values()) - before) * 1e6 / (rate * seconds)
                results[name].append((rate, p99, cpu_us))
            ports, pids = stacks[next(iter(AGES))]
            grpc_costs.append(
                (
                    server_cpu_us_per_call(pids["server"], ports.grpc, new_connection_each=False),
                    server_cpu_us_per_call(pids["server"], ports.grpc, new_connection_each=True),
                )
            )

    def median(name: str, field: int) -> float:
        return statistics.median(each[field] for each in results[name])

    unlimited, short = next(iter(AGES)), list(AGES)[-1]
    # How far one arm's rounds spread: a difference between arms within it is not measured.
    spread = max(
        (max(each[field] for each in results[name]) - min(each[field] for each in results[name])) / median(name, field)
        for name in AGES
        for field in (0, 2)
    )
    open_us = statistics.median(each[0] for each in grpc_costs)
    new_us = statistics.median(each[1] for each in grpc_costs)
    per_second = CLIENTS / SHIPPED_AGE_SECONDS
    lines = [
        f"REST through Envoy, {CONNECTIONS} wrk connections at saturation, medians of {rounds} interleaved rounds of "
        f"{seconds} s; gcd-server on CPU {run.CPU_SERVER}, Envoy (--concurrency {run.pod_envoy_concurrency()}) and "
        f"wrk on CPU {run.CPU_REST}. CPU is Envoy's and the server's together.",
        "",
        "| Envoy's connection age | req/s | p99 at saturation (ms) | CPU per request (us) |",
        "|---|---|---|---|",
        *(f"| {name} | {median(name, 0):.0f} | {median(name, 1):.2f} | {median(name, 2):.0f} |" for name in AGES),
        "",
        f"- REST: with every connection renewed each second ({CONNECTIONS / SHORT_AGE_SECONDS:.0f} reconnections a "
        f"second), throughput {median(short, 0) / median(unlimited, 0) - 1:+.1%} and CPU per request "
        f"{median(short, 2) / median(unlimited, 2) - 1:+.1%} against no limit, where one arm's rounds differ by up "
        f"to {spread:.0%}: the cost of reconnecting is below what this measures.",
        f"- gRPC straight to gcd-server: {open_us:.0f} us of its CPU per call on an open connection, {new_us:.0f} us "
        f"per call on a new one: about {new_us - open_us:.0f} us a connection.",
        f"- At the shipped {SHIPPED_AGE_SECONDS:.0f} s, {CLIENTS} clients of one pod reconnect {per_second:.1f} times "
        f"a second: {(new_us - open_us) * per_second / 1e4:.2f}% of the server's core.",
        "",
        f"Machine: {run.machine()}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    run.experiment_main(__doc__ or "", "reconnect-cost.md", reconnect_cost)


if __name__ == "__main__":
    main()
