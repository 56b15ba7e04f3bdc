"""Draws docs/dashboard.png: each panel of the Grafana dashboard, from its own queries, answered
by a real Prometheus that scraped the local stack for about two minutes of traffic, with a
gcd-server killed half-way (the stack restarts it). Grafana does not install here; this is
matplotlib, and the picture says so.

    python3 -m tox -e dashboard            # writes docs/dashboard.png
"""

from __future__ import annotations

import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from gcd_testing.prometheus import query_range

from monitoring import DASHBOARD, dashboard_queries, drive, watched_stack
from processes import REPO, server_pid

PICTURE = REPO / "docs" / "dashboard.png"
BEFORE_SECONDS, AFTER_SECONDS = 60, 50


def legend(template: str, labels: dict[str, str]) -> str:
    for name, value in labels.items():
        template = template.replace("{{" + name + "}}", value)
    return template


def draw(prometheus: str, namespace: str, start: float, end: float, path: Path) -> None:
    panels: dict[str, list[tuple[str, str]]] = {}
    for title, legend_format, expr in dashboard_queries(namespace):
        panels.setdefault(title, []).append((legend_format, expr))
    columns = 2
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(14, 3.2 * rows), sharex=True)
    for axis, (title, targets) in zip(axes.flat, panels.items(), strict=False):
        for legend_format, expr in targets:
            for series in query_range(prometheus, expr, start, end, 2):
                times = [float(t) - start for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                axis.plot(times, values, label=legend(legend_format, series["metric"]), linewidth=1.2)
        axis.set_title(title, fontsize=10)
        axis.legend(fontsize=7, loc="upper left")
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(panels) :]:
        axis.remove()
    for axis in axes.flat[-columns:]:
        axis.set_xlabel("seconds (gcd-server killed at the dashed line)")
    for axis in figure.axes:
        axis.axvline(BEFORE_SECONDS, color="grey", linestyle="--", linewidth=0.8)
    figure.suptitle(
        f"{DASHBOARD.name}: its queries, drawn with matplotlib from a real Prometheus (not Grafana)\n"
        f"local gcd-stack on {platform.machine()} with {os.cpu_count()} CPUs; pod resources, restarts and "
        "replicas from a kube-state-metrics/cAdvisor stand-in",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=80)


def main(argv: list[str]) -> None:
    path = Path(argv[1]) if len(argv) > 1 else PICTURE
    with tempfile.TemporaryDirectory(prefix="gcd-dashboard-") as workdir, watched_stack(Path(workdir)) as watched:
        start = time.time()
        drive(watched, BEFORE_SECONDS)
        os.kill(server_pid(watched.stack), signal.SIGKILL)
        drive(watched, AFTER_SECONDS)
        draw(watched.prometheus, watched.namespace, start, time.time(), path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv)
