"""What the fault, load and hostile-input suites measured, printed as a table at the end of the
run (conftest.py)."""

from __future__ import annotations

FIGURES: dict[str, str] = {}


def record_figure(name: str, value: object) -> None:
    FIGURES[name] = str(value)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
