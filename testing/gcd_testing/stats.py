"""Summaries of measured samples."""

from collections.abc import Sequence


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The sample below which fraction of them lie (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
