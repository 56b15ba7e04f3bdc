"""Where gcd-server's CPU goes under load: py-spy samples the server while h2load drives REST
through Envoy at saturation, as the benchmark's rest-envoy arm does, and writes a flame graph
(bench/server-profile.svg) and the functions that hold the most samples (server-profile.md).

    .tox/bench/bin/python bench/profile_server.py      (as root, or with ptrace allowed; py-spy)
"""

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from gcd_stack.envoy_config import write_local_config
from gcd_stack.processes import health_url, running, server_is_serving, url_answers_ok, wait_until_ready
from gcd_testing.ports import free_ports

import run

SAMPLES_PER_SECOND = 250
TOP_FUNCTIONS = 15


def profile(workdir: Path, seconds: int, output_dir: Path) -> str:
    ports = free_ports()
    config = workdir / "envoy.yaml"
    write_local_config(config, ports)
    with ExitStack() as stack:
        server = stack.enter_context(
            running(run.pinned_server(ports.grpc, ports.metrics, ports.sidecar), workdir / "server.log")
        )
        wait_until_ready(lambda: server_is_serving(ports.grpc), server, "gcd-server")
        envoy = stack.enter_context(running(run.pinned_envoy(config), workdir / "envoy.log"))
        wait_until_ready(lambda: url_answers_ok(health_url(ports)), envoy, "Envoy")
        arm = run.Arm("rest-envoy", False, ports.envoy, "envoy")
        run.check_answers(arm)
        raw = workdir / "profile.txt"
        spy = ["py-spy", "record", "--pid", str(server.pid), "--rate", str(SAMPLES_PER_SECOND)]
        # Only the thread that holds the GIL: that is where the one core's time goes, not the
        # worker threads waiting for their turn.
        spy += ["--duration", str(seconds), "--nonblocking", "--gil"]
        flame = subprocess.Popen([*spy, "--format", "flamegraph", "--output", str(output_dir / "server-profile.svg")])
        collapsed = subprocess.Popen([*spy, "--format", "raw", "--output", str(raw)])
        time.sleep(1)  # py-spy attaches
        done, measured_seconds, _ = run.h2load(arm, workdir, seconds, rate=None)
        for sampler in (flame, collapsed):
            if sampler.wait(seconds + 30) != 0:
                raise RuntimeError(f"py-spy exited with {sampler.returncode}")
    return summary(raw.read_text(), done / measured_seconds, seconds)


def summary(collapsed: str, rate: float, seconds: int) -> str:
    """The functions with the most samples on the stack (inclusive) and at its top (self), their
    lines taken together."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        samples = int(count)
        total += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
    lines = [
        f"gcd-server sampled by py-spy at {SAMPLES_PER_SECOND}/s for {seconds} s while serving {rate:.0f} REST req/s "
        f"through Envoy at saturation: {total} samples of the thread holding the GIL. "
        "Flame graph: [server-profile.svg](server-profile.svg).",
        "",
        "| function (file) | on the stack | at the top |",
        "|---|---|---|",
    ]
    for frame, samples in inclusive.most_common(TOP_FUNCTIONS):
        lines.append(f"| `{frame}` | {samples / total:.0%} | {own[frame] / total:.0%} |")
    lines += ["", f"Machine: {run.machine()}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10, help="how long to sample (default: %(default)s)")
    parser.add_argument("--output-dir", type=Path, default=run.BENCH, help="where the profile goes")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        sys.exit("py-spy is missing: pip install py-spy (the bench extra has it)")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gcd-profile-") as workdir:
        result = profile(Path(workdir), args.seconds, args.output_dir)
    (args.output_dir / "server-profile.md").write_text(result)
    print(result)


if __name__ == "__main__":
    main()
