"""The levers bench/server-profile.md points at, tried: gcd-server variants, each behind an Envoy
of its own as in the pod, driven with REST at saturation, interleaved, and compared on the
server's CPU per request. A variant changes one module constant or flag of gcd-server for the
run; the server's code is not edited.

    .tox/bench/bin/python bench/server_levers.py      (the tools run.py needs)

Writes bench/server-levers.md. A lever is worth adopting at 10% less CPU per request or more."""

import functools
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

from gcd_server.app import _WORKER_THREADS
from gcd_stack.envoy_config import write_local_config
from gcd_stack.ports import Ports
from gcd_stack.processes import health_url, running, server_command, server_is_serving, url_answers_ok, wait_until_ready
from gcd_testing.ports import free_ports

import run

# name -> (Python run before gcd-server's main, extra flags)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    f"as shipped ({_WORKER_THREADS} worker threads)": ("", []),
    "1 worker thread": ("app._WORKER_THREADS = 1", []),
    "2 worker threads": ("app._WORKER_THREADS = 2", []),
    "8 worker threads": ("app._WORKER_THREADS = 8", []),
    "no metrics (no interceptor)": ("", ["--metrics-port", "0"]),
}


def server_variant(preamble: str, flags: list[str], ports: Ports) -> list[str]:
    program = "; ".join(part for part in ("import gcd_server.app as app", preamble, "app.main()") if part)
    command = server_command(ports.grpc, ports.metrics, *flags, sidecar_port=ports.sidecar)
    # The same flags, but with the variant's preamble run first.
    return run.pinned(run.CPU_SERVER, [sys.executable, "-c", program, *command[3:]])


def levers(workdir: Path, rounds: int, seconds: int) -> str:
    run.write_request_file(workdir)
    concurrency = run.pod_envoy_concurrency()
    arms: dict[str, run.Arm] = {}
    pids: dict[str, dict[str, int]] = {}
    with ExitStack() as stack:
        for index, (name, (preamble, flags)) in enumerate(VARIANTS.items()):
            ports = free_ports()
            server = stack.enter_context(
                running(server_variant(preamble, flags, ports), workdir / f"server-{index}.log")
            )
            wait_until_ready(functools.partial(server_is_serving, ports.grpc), server, f"gcd-server ({name})")
            config = workdir / f"envoy-{index}.yaml"
            write_local_config(config, ports)
            envoy = stack.enter_context(running(run.pinned_envoy(config), workdir / f"envoy-{index}.log"))
            wait_until_ready(functools.partial(url_answers_ok, health_url(ports)), envoy, f"Envoy ({name})")
            arms[name] = run.Arm(name, False, ports.envoy, "envoy")
            pids[name] = {"server": server.pid, "envoy": envoy.pid}
        runs = run.interleaved(arms, pids, workdir, rounds, seconds)

    def server_us(name: str) -> float:
        return statistics.median(each.cpu_us_per_request("server") for each in runs[name])

    shipped = server_us(next(iter(VARIANTS)))
    lines = [
        f"gcd-server CPU per REST request through its own Envoy, medians of {rounds} interleaved rounds of {seconds} s "
        f"at saturation; the servers on CPU {run.CPU_SERVER}, the Envoys (--concurrency {concurrency}) and the load "
        f"on CPU {run.CPU_REST}.",
        "",
        "| gcd-server | CPU per request (us) | against as shipped | req/s |",
        "|---|---|---|---|",
    ]
    for name in arms:
        rate = statistics.median(each.rate for each in runs[name])
        lines.append(f"| {name} | {server_us(name):.0f} | {server_us(name) / shipped - 1:+.0%} | {rate:.0f} |")
    lines += ["", f"Machine: {run.machine()}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    run.experiment_main(__doc__ or "", "server-levers.md", levers)


if __name__ == "__main__":
    main()
