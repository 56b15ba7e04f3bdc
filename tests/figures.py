"""What the fault, load and hostile-input suites measured, printed as a table at the end of the
run (conftest.py)."""

from __future__ import annotations

FIGURES: dict[str, str] = {}


def record_figure(name: str, value: object) -> None:
    FIGURES[name] = str(value)
