"""Where Envoy's CPU per transcoded REST request goes: the same benchmark arm (REST through
Envoy to one gcd-server) against Envoys that each leave out one feature of envoy/envoy.yaml,
interleaved, so that each feature's cost is the difference from the shipped config in one run.
Native gRPC passed through the shipped Envoy is the floor: proxying without transcoding.

    .tox/bench/bin/python bench/envoy_breakdown.py     (the bench env of tox; the tools run.py needs)

Writes bench/envoy-breakdown.md. Placement, load and gates are run.py's."""

import functools
import statistics
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import yaml

from gcd_stack.envoy_config import (
    TRANSCODER,
    Config,
    abstract_admin_socket,
    connection_manager,
    local_config,
    packaged_config,
    route_named,
    routes,
)
from gcd_stack.ports import Ports
from gcd_stack.processes import envoy_is_live, running, server_is_serving, wait_until_ready
from gcd_testing.ports import distinct_free_ports

import run

HEADER_MUTATION = "envoy.filters.http.header_mutation"


def _without_filter(name: str) -> Callable[[Config], None]:
    def change(config: Config) -> None:
        manager = connection_manager(config)
        manager["http_filters"] = [item for item in manager["http_filters"] if item["name"] != name]
        for route in routes(config):
            route.get("typed_per_filter_config", {}).pop(name, None)

    return change


# Each variant leaves out one thing the shipped config does, and nothing else.
VARIANTS: dict[str, Callable[[Config], None]] = {
    "as shipped": lambda config: None,
    "no access log": lambda config: connection_manager(config).pop("access_log"),
    "no request ids": lambda config: connection_manager(config).update(generate_request_id=False),
    "no JSON error mappers": lambda config: connection_manager(config).pop("local_reply_config"),
    "no header mutation filter": _without_filter(HEADER_MUTATION),
    "no retry policy": lambda config: route_named(config, "rest")["route"].pop("retry_policy"),
    "no overload manager": lambda config: config.pop("overload_manager"),
    # Envoy cannot stop counting, but it can create no statistic at all.
    "no statistics": lambda config: config.update(stats_config={"stats_matcher": {"reject_all": True}}),
    "transcoder without print options": lambda config: next(
        item["typed_config"] for item in connection_manager(config)["http_filters"] if item["name"] == TRANSCODER
    ).pop("print_options"),
}


def breakdown(workdir: Path, rounds: int, seconds: int) -> str:
    grpc_port, sidecar_port, metrics_port, *envoy_ports = distinct_free_ports(3 + 3 * len(VARIANTS))
    run.write_request_file(workdir)
    concurrency = run.pod_envoy_concurrency()
    arms: dict[str, run.Arm] = {}
    with ExitStack() as stack:
        server = stack.enter_context(
            running(run.pinned_server(grpc_port, metrics_port, sidecar_port), workdir / "server.log")
        )
        wait_until_ready(lambda: server_is_serving(grpc_port), server, "gcd-server")
        pids: dict[str, dict[str, int]] = {}
        for index, (name, change) in enumerate(VARIANTS.items()):
            envoy, envoy_metrics, envoy_probes = envoy_ports[3 * index : 3 * index + 3]
            ports = Ports(
                envoy=envoy,
                grpc=grpc_port,
                sidecar=sidecar_port,
                envoy_metrics=envoy_metrics,
                envoy_probes=envoy_probes,
                metrics=0,
            )
            config = local_config(packaged_config(), ports)
            change(config)
            path = workdir / f"envoy-{index}.yaml"
            path.write_text(yaml.safe_dump(config))
            process = stack.enter_context(running(run.pinned_envoy(path), workdir / f"envoy-{index}.log"))
            # Ready as Envoy itself says.
            ready = functools.partial(envoy_is_live, abstract_admin_socket(ports))
            wait_until_ready(ready, process, f"Envoy ({name})")
            arms[name] = run.Arm(name, False, envoy, "envoy")
            pids[name] = {"server": server.pid, "envoy": process.pid}
        shipped = run.Arm("gRPC passed through, as shipped", True, arms["as shipped"].port, "envoy")
        arms[shipped.name] = shipped
        pids[shipped.name] = pids["as shipped"]
        runs = run.interleaved(arms, pids, workdir, rounds, seconds)

    def envoy_us(name: str) -> float:
        return statistics.median(each.cpu_us_per_request("envoy") for each in runs[name])

    baseline = envoy_us("as shipped")
    lines = [
        f"Envoy CPU per request, medians of {rounds} interleaved rounds of {seconds} s at saturation; gcd-server "
        f"on CPU {run.CPU_SERVER}, each Envoy (--concurrency {concurrency}) and the load on CPU {run.CPU_REST}. "
        "Each row leaves out one feature of envoy/envoy.yaml; the difference is what that feature costs.",
        "",
        "| Envoy | CPU per request (us) | against as shipped (us) | req/s |",
        "|---|---|---|---|",
    ]
    for name in arms:
        rate = statistics.median(each.rate for each in runs[name])
        lines.append(f"| {name} | {envoy_us(name):.0f} | {envoy_us(name) - baseline:+.0f} | {rate:.0f} |")
    lines += ["", f"Machine: {run.machine()}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    run.experiment_main(__doc__ or "", "envoy-breakdown.md", breakdown)


if __name__ == "__main__":
    main()
