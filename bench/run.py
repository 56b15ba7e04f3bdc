"""The benchmark: four ways to serve a GCD, measured side by side in one run.

  grpc-direct   gRPC straight to gcd-server
  rest-envoy    REST through Envoy's transcoder to the same server (this project's design)
  grpc-envoy    gRPC passed through Envoy
  rest-gateway  REST through bench/gateway.py, a hand-written Python gateway (the original design)

gcd-server is pinned to CPU 0; Envoy, the gateway and the load generators (h2load, wrk) share
CPU 1. The arms run interleaved, ROUNDS rounds, and medians are reported. Every run is gated:
the load generator must report no failure, and the bytes of response bodies must add up to a
right answer for every request (a gRPC error is a 200 with no body, so this catches those too).

    python bench/run.py            (tox -e bench; needs h2load and wrk: apt-get install nghttp2-client wrk)
"""

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import yaml

from gcd.v1 import gcd_pb2, gcd_pb2_grpc
from gcd_server.app import SERVICE_NAME
from gcd_stack.envoy_config import LOOPBACK, write_local_config
from gcd_stack.ports import Ports
from gcd_stack.processes import (
    envoy_command,
    health_url,
    running,
    server_command,
    server_is_serving,
    url_answers_ok,
    wait_until_ready,
)
from gcd_testing.grpc_frame import grpc_frame
from gcd_testing.ports import distinct_free_ports
from gcd_testing.proc import cpu_seconds, memory_mib
from gcd_testing.stats import percentile
from gcd_testing.tool_output import parse_h2load, parse_wrk

import go_original

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ROUNDS = 3
SECONDS = 3
# The fixed-rate runs offer this fraction of what direct gRPC serves at saturation on the machine
# at hand, so that latency is compared at the same relative load on any machine.
LOAD_FRACTION = 0.3
CPU_SERVER, CPU_REST = "0", "1"
REQUEST = gcd_pb2.ComputeRequest(a=12, b=18)
REST_PATH = "/gcd/12/18"
# h2load's body for the gRPC arms: gRPC's length-prefixed message, written once per benchmark.
REQUEST_FILE = "request.bin"
# Response bodies: gRPC's 5-byte prefix and ComputeResponse(result=6); the REST JSON.
GRPC_BODY_BYTES = 5 + len(gcd_pb2.ComputeResponse(result=6).SerializeToString())
REST_BODY = b'{"result":"6"}'


@dataclass(frozen=True)
class Arm:
    name: str
    grpc: bool
    port: int
    proxy: str | None  # the process between client and server whose CPU is reported
    server: str = "server"  # the process that computes: gcd-server, or the Go original's server


@dataclass
class Run:
    requests: int
    seconds: float
    latencies_us: list[int]
    cpu_seconds: dict[str, float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def latency_ms(self, fraction: float) -> float:
        return percentile(self.latencies_us, fraction) / 1000

    def cpu_us_per_request(self, process: str) -> float:
        return self.cpu_seconds[process] * 1e6 / self.requests


def pinned(cpu: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command]


# Start-up is timed to 5 ms.
START_POLL_SECONDS = 0.005


def pinned_server(port: int, metrics_port: int, sidecar_port: int = 0) -> list[str]:
    """gcd-server on CPU_SERVER; metrics_port 0 turns its metrics (and their counting) off, and
    sidecar_port is the one Envoy dials."""
    return pinned(CPU_SERVER, server_command(port, metrics_port, sidecar_port=sidecar_port))


def pinned_envoy(config: Path) -> list[str]:
    """Envoy with config on CPU_REST, with as many workers as the pods give it."""
    return pinned(CPU_REST, [*envoy_command(config), "--disable-hot-restart"])


def write_request_file(workdir: Path) -> None:
    """h2load's body for the gRPC arms: the request as gRPC frames it."""
    (workdir / REQUEST_FILE).write_bytes(grpc_frame(REQUEST.SerializeToString()))


def server_start_seconds(workdir: Path) -> float:
    """Spawn to SERVING, for a server started on its own core."""
    port, metrics_port = distinct_free_ports(2)
    with running(pinned_server(port, metrics_port), workdir / "server-start.log") as process:
        return wait_until_ready(lambda: server_is_serving(port), process, "gcd-server", poll_seconds=START_POLL_SECONDS)


def pod_envoy_concurrency() -> str:
    """--concurrency as the pods run Envoy (the base's args; no overlay changes them): the
    benchmark measures that Envoy."""
    deployment = yaml.safe_load((REPO / "kustomize" / "base" / "deployment.yaml").read_text())
    (envoy,) = deployment["spec"]["template"]["spec"]["initContainers"]
    args: list[str] = envoy["args"]
    return args[args.index("--concurrency") + 1]


def h2load(arm: Arm, workdir: Path, seconds: int, rate: int | None) -> tuple[int, float, list[int]]:
    """One h2load run against arm; returns requests, seconds and per-request latencies (us)."""
    log = workdir / "h2load.log"
    log.unlink(missing_ok=True)
    command = ["h2load", "-D", str(seconds), f"--log-file={log}"]
    command += ["-c", "10", f"--rps={rate // 10}"] if rate else (["-c", "16", "-m", "4"] if arm.grpc else ["-c", "16"])
    if arm.grpc:
        command += ["-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(workdir / REQUEST_FILE)]
        command.append(f"http://{LOOPBACK}:{arm.port}/{SERVICE_NAME}/Compute")
    else:
        command += ["--h1", f"http://{LOOPBACK}:{arm.port}{REST_PATH}"]
    run = subprocess.run(pinned(CPU_REST, command), capture_output=True, text=True)
    summary = parse_h2load(run.stdout + run.stderr)
    body_bytes = GRPC_BODY_BYTES if arm.grpc else len(REST_BODY)
    gates = {
        "exit 0": run.returncode == 0,
        "some done": summary.done > 0,
        "none failed": summary.failed == 0,
        "none errored": summary.errored == 0,
        "all 2xx": summary.status_2xx == summary.done,
        # Duration mode may count the body of a request still under way when time ran out.
        "right bodies": summary.done * body_bytes <= summary.data_bytes <= summary.started * body_bytes,
    }
    failed = [gate for gate, held in gates.items() if not held]
    if failed:
        raise RuntimeError(f"{arm.name}: h2load run failed {', '.join(failed)}: {summary}\n{run.stdout}{run.stderr}")
    latencies = [int(line.split("\t")[2]) for line in log.read_text().splitlines()]
    return summary.done, summary.seconds, latencies


def wrk_rate(arm: Arm, seconds: int) -> float:
    """Requests/s by wrk, a second load generator, for the REST arms."""
    command = ["wrk", "-t1", "-c16", f"-d{seconds}s", f"http://{LOOPBACK}:{arm.port}{REST_PATH}"]
    run = subprocess.run(pinned(CPU_REST, command), capture_output=True, text=True)
    summary = parse_wrk(run.stdout + run.stderr)
    if run.returncode != 0 or summary.non_2xx or summary.socket_errors:
        raise RuntimeError(f"{arm.name}: wrk saw errors: {summary}\n{run.stdout}{run.stderr}")
    return summary.requests_per_second


def check_answers(arm: Arm) -> None:
    """The gate before timing: one right answer from each arm."""
    if arm.grpc:
        with grpc.insecure_channel(f"{LOOPBACK}:{arm.port}") as channel:
            assert gcd_pb2_grpc.GCDServiceStub(channel).Compute(REQUEST, timeout=5).result == 6
    else:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{arm.port}{REST_PATH}", timeout=5) as response:
            assert response.read() == REST_BODY


def measured(arm: Arm, pids: dict[str, int], workdir: Path, seconds: int, rate: int | None) -> Run:
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    requests, seconds_taken, latencies = h2load(arm, workdir, seconds, rate)
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return Run(requests, seconds_taken, latencies, cpu)


def interleaved(
    arms: dict[str, Arm], pids: dict[str, dict[str, int]], workdir: Path, rounds: int, seconds: int
) -> dict[str, list[Run]]:
    """Saturation runs of every arm, round after round, after a right answer and an untimed
    warm-up each; pids[arm] names the processes whose CPU each arm's runs count."""
    for arm in arms.values():
        check_answers(arm)
        h2load(arm, workdir, seconds=1, rate=None)
    runs: dict[str, list[Run]] = {name: [] for name in arms}
    for round_number in range(1, rounds + 1):
        for name, arm in arms.items():
            runs[name].append(measured(arm, pids[name], workdir, seconds, rate=None))
        print(f"round {round_number} of {rounds} done", file=sys.stderr, flush=True)
    return runs


def benchmark(workdir: Path, rounds: int, seconds: int, output_dir: Path, server_metrics: bool) -> str:
    start_seconds = [server_start_seconds(workdir) for _ in range(rounds)]
    *stack_ports, gateway_port, go_port, gin_port = distinct_free_ports(len(dataclasses.fields(Ports)) + 3)
    ports = Ports(*stack_ports)
    go_missing = go_original.missing()
    envoy_config = workdir / "envoy.yaml"
    write_local_config(envoy_config, ports)
    write_request_file(workdir)
    concurrency = pod_envoy_concurrency()
    arms = [
        Arm("grpc-direct", True, ports.grpc, None),
        Arm("rest-envoy", False, ports.envoy, "envoy"),
        Arm("grpc-envoy", True, ports.envoy, "envoy"),
        Arm("rest-gateway", False, gateway_port, "gateway"),
    ]
    if not go_missing:
        arms += [
            Arm("go-grpc-direct", True, go_port, None, server="go-server"),
            Arm("rest-gin", False, gin_port, "gin", server="go-server"),
        ]
    saturation: dict[str, list[Run]] = {arm.name: [] for arm in arms}
    fixed_rate: dict[str, list[Run]] = {arm.name: [] for arm in arms}
    wrk: dict[str, list[float]] = {arm.name: [] for arm in arms if not arm.grpc}
    with ExitStack() as stack:
        metrics_port = ports.metrics if server_metrics else 0
        server = stack.enter_context(
            running(pinned_server(ports.grpc, metrics_port, ports.sidecar), workdir / "server.log")
        )
        wait_until_ready(lambda: server_is_serving(ports.grpc), server, "gcd-server")
        envoy = stack.enter_context(running(pinned_envoy(envoy_config), workdir / "envoy.log"))
        wait_until_ready(lambda: url_answers_ok(health_url(ports)), envoy, "Envoy")
        gateway_args = [sys.executable, str(BENCH / "gateway.py"), "--port", str(gateway_port)]
        gateway_args += ["--upstream", f"{LOOPBACK}:{ports.grpc}"]
        gateway = stack.enter_context(running(pinned(CPU_REST, gateway_args), workdir / "gateway.log"))
        wait_until_ready(lambda: url_answers_ok(f"http://{LOOPBACK}:{gateway_port}{REST_PATH}"), gateway, "gateway")
        pids = {"server": server.pid, "envoy": envoy.pid, "gateway": gateway.pid}
        if not go_missing:
            go = go_original.build(workdir)
            go_server = stack.enter_context(
                running(pinned(CPU_SERVER, [str(go.server), "-listen", f"{LOOPBACK}:{go_port}"]), workdir / "go.log")
            )
            wait_until_ready(lambda: server_is_serving(go_port), go_server, "the Go server")
            gin_args = [str(go.gateway), "-listen", f"{LOOPBACK}:{gin_port}", "-upstream", f"{LOOPBACK}:{go_port}"]
            gin = stack.enter_context(running(pinned(CPU_REST, gin_args), workdir / "gin.log"))
            wait_until_ready(lambda: url_answers_ok(f"http://{LOOPBACK}:{gin_port}{REST_PATH}"), gin, "gin")
            pids |= {"go-server": go_server.pid, "gin": gin.pid}

        for arm in arms:
            check_answers(arm)
            h2load(arm, workdir, seconds=1, rate=None)  # warm-up, untimed
        capacity = measured(arms[0], pids, workdir, seconds, rate=None).rate
        # h2load's --rps is per client, and it runs ten.
        rate = max(10, round(LOAD_FRACTION * capacity / 10) * 10)
        for round_number in range(1, rounds + 1):
            for arm in arms:
                saturation[arm.name].append(measured(arm, pids, workdir, seconds, rate=None))
                fixed_rate[arm.name].append(measured(arm, pids, workdir, seconds, rate=rate))
                if arm.name in wrk:
                    wrk[arm.name].append(wrk_rate(arm, seconds))
            print(f"round {round_number} of {rounds} done", file=sys.stderr, flush=True)
        memory = {name: memory_mib(pid) for name, pid in pids.items()}
    metrics = "on" if server_metrics else "off"
    setup = (
        f"Medians of {rounds} interleaved rounds of {seconds} s per run, server metrics {metrics}; fixed-rate runs at "
        f"{rate} req/s, {LOAD_FRACTION:.0%} of direct gRPC's saturation rate on this machine"
    )
    start = statistics.median(start_seconds)
    chart_path = output_dir / "results.png"
    return report(arms, saturation, fixed_rate, rate, wrk, memory, start, setup, concurrency, chart_path, go_missing)


def report(
    arms: list[Arm],
    saturation: dict[str, list[Run]],
    fixed_rate: dict[str, list[Run]],
    rate: int,
    wrk: dict[str, list[float]],
    memory: dict[str, tuple[float, float]],
    start_seconds: float,
    setup: str,
    concurrency: str,
    chart_path: Path,
    go_missing: str | None,
) -> str:
    def median(runs: list[Run], value: Callable[[Run], float]) -> float:
        return statistics.median(value(run) for run in runs)

    rates = {arm.name: median(saturation[arm.name], lambda run: run.rate) for arm in arms}
    p99_at_rate = {arm.name: median(fixed_rate[arm.name], lambda run: run.latency_ms(0.99)) for arm in arms}

    def cpu_us(runs: list[Run], process: str) -> float:
        return statistics.median(run.cpu_us_per_request(process) for run in runs)

    server_us = {arm.name: cpu_us(saturation[arm.name], arm.server) for arm in arms}
    proxy_us = {arm.name: cpu_us(saturation[arm.name], arm.proxy) for arm in arms if arm.proxy}
    lines = [
        f"{setup}; gcd-server on CPU {CPU_SERVER}, "
        f"Envoy (--concurrency {concurrency}), the gateway and the load generators on CPU {CPU_REST}.",
        "",
        f"| arm | req/s at saturation | p50 / p99 at saturation (ms) | p50 / p99 at {rate} req/s (ms) "
        "| server CPU per request (us) | proxy CPU per request (us) | wrk req/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in arms:
        sat, fixed = saturation[arm.name], fixed_rate[arm.name]
        lines.append(
            f"| {arm.name} | {rates[arm.name]:.0f} "
            f"| {median(sat, lambda r: r.latency_ms(0.5)):.2f} / {median(sat, lambda r: r.latency_ms(0.99)):.2f} "
            f"| {median(fixed, lambda r: r.latency_ms(0.5)):.2f} / {p99_at_rate[arm.name]:.2f} "
            f"| {server_us[arm.name]:.0f} | {f'{proxy_us[arm.name]:.0f} ({arm.proxy})' if arm.proxy else '-'} "
            f"| {f'{statistics.median(wrk[arm.name]):.0f}' if arm.name in wrk else '-'} |"
        )
    # Targets are ratios of figures measured in this one run, so they mean the same on any machine;
    # what depends on the machine is reported below them, not judged.
    ratios = {
        "REST via Envoy / direct gRPC, req/s": (rates["rest-envoy"] / rates["grpc-direct"], ">=", 0.9),
        "REST via Envoy / hand-written gateway, req/s": (rates["rest-envoy"] / rates["rest-gateway"], ">=", 2.0),
        f"p99 at {LOAD_FRACTION:.0%} load: REST via Envoy / direct gRPC": (
            p99_at_rate["rest-envoy"] / p99_at_rate["grpc-direct"],
            "<=",
            2.0,
        ),
        f"p99 at {LOAD_FRACTION:.0%} load: REST via Envoy / via the gateway": (
            p99_at_rate["rest-envoy"] / p99_at_rate["rest-gateway"],
            "<=",
            1.0,
        ),
        "Envoy CPU / server CPU, per REST request": (proxy_us["rest-envoy"] / server_us["rest-envoy"], "<=", 1.0),
        "Envoy CPU / gateway CPU, per REST request": (proxy_us["rest-envoy"] / proxy_us["rest-gateway"], "<=", 1.0),
    }
    targets = [
        (name, f"{value:.2f}x", f"{op} {goal}x", value >= goal if op == ">=" else value <= goal)
        for name, (value, op, goal) in ratios.items()
    ]
    # Anonymous memory is the process's own; its resident file pages (Envoy's 100 MB binary, Python's
    # libraries) are shared and reclaimable, and vary from run to run. Peak RSS is beside it.
    for name, limit_mib in (("server", 47.7), ("envoy", 61.0)):
        peak, anonymous = memory[name]
        targets.append(
            (
                f"{name} anonymous memory (peak RSS)",
                f"{anonymous:.1f} MiB ({peak:.1f})",
                f"<= {limit_mib} MiB",
                anonymous <= limit_mib,
            )
        )
    if "rest-gin" in rates:
        envoy_vs_gin = proxy_us["rest-envoy"] / proxy_us["rest-gin"]
        targets.append(
            ("Envoy CPU / gin CPU, per REST request", f"{envoy_vs_gin:.2f}x", "<= 1.5x", envoy_vs_gin <= 1.5)
        )
    lines += ["", "| target (ratios within this run) | measured | goal | met |", "|---|---|---|---|"]
    lines += [f"| {name} | {value} | {goal} | {'yes' if met else 'no'} |" for name, value, goal, met in targets]
    peak, anonymous = memory["gateway"]
    absolute = [
        ("Envoy CPU per transcoded request", f"{proxy_us['rest-envoy']:.0f} us"),
        ("server CPU per request (REST via Envoy)", f"{server_us['rest-envoy']:.0f} us"),
        (
            f"p99 at {rate} req/s: REST via Envoy / direct gRPC",
            f"{p99_at_rate['rest-envoy']:.2f} / {p99_at_rate['grpc-direct']:.2f} ms",
        ),
        ("server start to SERVING", f"{start_seconds:.2f} s"),
        ("gateway anonymous memory (peak RSS)", f"{anonymous:.1f} MiB ({peak:.1f})"),
    ]
    lines += ["", "| on this machine (not a target) | measured |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in absolute]
    lines += per_node(server_us["rest-envoy"], proxy_us["rest-envoy"], memory)
    lines += go_comparison(rates, p99_at_rate, server_us, proxy_us, memory, go_missing)
    lines += ["", f"Machine: {machine()}."]
    chart(arms, rates, p99_at_rate, rate, chart_path)
    return "\n".join(lines) + "\n"


NODE_CORES = 4  # a Raspberry Pi 4 or 5


def per_node(server_us: float, envoy_us: float, memory: dict[str, tuple[float, float]]) -> list[str]:
    """Derived, not measured: what one 4-core node could serve with 1 to 4 pods, from the CPU per
    REST request measured above, on cores as fast as this machine's. Each pod's server is held to
    one core by Python's GIL; all pods share the node's cores with their Envoys."""
    pod_memory = memory["server"][1] + memory["envoy"][1]
    lines = [
        "",
        f"Derived from the CPU per REST request above, not measured: a {NODE_CORES}-core node whose cores are as "
        "fast as this machine's (a Pi's are slower, which scales every row alike).",
        "",
        f"| pods per {NODE_CORES}-core node (derived) | REST req/s it serves | bound by | anonymous memory, MiB |",
        "|---|---|---|---|",
    ]
    for pods in range(1, NODE_CORES + 1):
        by_servers = pods * 1e6 / server_us
        by_cores = NODE_CORES * 1e6 / (server_us + envoy_us)
        bound = "each server's one core" if by_servers < by_cores else f"the node's {NODE_CORES} cores"
        lines.append(f"| {pods} | {min(by_servers, by_cores):.0f} | {bound} | {pods * pod_memory:.0f} |")
    return lines


def go_comparison(
    rates: dict[str, float],
    p99_at_rate: dict[str, float],
    server_us: dict[str, float],
    proxy_us: dict[str, float],
    memory: dict[str, tuple[float, float]],
    go_missing: str | None,
) -> list[str]:
    """This design beside the Go original it replaces, measured in the same run."""
    if go_missing:
        return ["", f"The Go original's arms did not run: {go_missing}."]
    rows = [
        ("gRPC straight to the server, req/s", rates["grpc-direct"], rates["go-grpc-direct"]),
        ("REST through the proxy, req/s", rates["rest-envoy"], rates["rest-gin"]),
        (f"REST p99 at {LOAD_FRACTION:.0%} load, ms", p99_at_rate["rest-envoy"], p99_at_rate["rest-gin"]),
        ("server CPU per direct gRPC call, us", server_us["grpc-direct"], server_us["go-grpc-direct"]),
        ("proxy CPU per REST request, us", proxy_us["rest-envoy"], proxy_us["rest-gin"]),
        (
            "server + proxy CPU per REST request, us",
            server_us["rest-envoy"] + proxy_us["rest-envoy"],
            server_us["rest-gin"] + proxy_us["rest-gin"],
        ),
        (
            "server + proxy anonymous memory, MiB",
            memory["server"][1] + memory["envoy"][1],
            memory["go-server"][1] + memory["gin"][1],
        ),
        (
            "server + proxy peak RSS, MiB",
            memory["server"][0] + memory["envoy"][0],
            memory["go-server"][0] + memory["gin"][0],
        ),
    ]
    lines = ["", "| beside the Go original | Python + Envoy | Go + gin | ratio |", "|---|---|---|---|"]
    lines += [f"| {name} | {figure(ours)} | {figure(theirs)} | {ours / theirs:.2f}x |" for name, ours, theirs in rows]
    return lines


def figure(value: float) -> str:
    """Three significant digits, without an exponent."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor())
    python = platform.python_version()
    return f"{os.cpu_count()} x {model}, {platform.machine()}, Linux {platform.release()}, Python {python}"


def chart(arms: list[Arm], rates: dict[str, float], p99_at_rate: dict[str, float], rate: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [arm.name for arm in arms]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    colors = ["#777", "#2a7", "#7a2", "#c54", "#57a", "#a5c"][: len(names)]
    left.bar(names, [rates[name] for name in names], color=colors)
    left.set_title("requests/s at saturation\n(higher is better)", fontsize=10)
    right.bar(names, [p99_at_rate[name] for name in names], color=colors)
    right.set_title(f"p99 latency (ms) at {rate} req/s, {LOAD_FRACTION:.0%} load\n(lower is better)", fontsize=10)
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=20)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def experiment_main(description: str, output: str, experiment: Callable[[Path, int, int], str]) -> None:
    """The command line of a side experiment (envoy_breakdown.py, server_levers.py): rounds,
    seconds, where its report goes; experiment(workdir, rounds, seconds) writes the report."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=SECONDS, help="length of each run (default: %(default)s)")
    parser.add_argument("--output-dir", type=Path, default=BENCH, help=f"where {output} goes (default: bench/)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gcd-bench-") as workdir:
        result = experiment(Path(workdir), args.rounds, args.seconds)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / output).write_text(result)
    print(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=SECONDS, help="length of each run (default: %(default)s)")
    parser.add_argument(
        "--no-server-metrics", action="store_true", help="run gcd-server without metrics, to see what they cost"
    )
    parser.add_argument(
        "--output-dir", type=Path, default=BENCH, help="where results.md and results.png go (default: bench/)"
    )
    args = parser.parse_args()
    missing = [tool for tool in ("h2load", "wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: apt-get install nghttp2-client wrk util-linux")
    if (os.cpu_count() or 1) < 2:
        sys.exit("the benchmark pins the server and the load to two different CPUs; this machine has one")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gcd-bench-") as workdir:
        results = benchmark(
            Path(workdir), args.rounds, args.seconds, args.output_dir, server_metrics=not args.no_server_metrics
        )
    (args.output_dir / "results.md").write_text(results)
    print(results)


if __name__ == "__main__":
    main()
