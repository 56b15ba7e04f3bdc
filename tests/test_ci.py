"""Tests that need a Debian package skip where it is missing; CI must not be such a place:
.ci/run installs every package they name."""

import pytest

from gcd_testing import prometheus

import browser
import go_original
from processes import REPO

NEEDED = {
    "the browser tests": browser.DEBIAN_PACKAGES,
    "the dashboard and alert tests": prometheus.DEBIAN_PACKAGES,
    "the benchmark's Go arms": tuple(go_original.PACKAGES.split()),
}


@pytest.mark.parametrize("packages", NEEDED.values(), ids=NEEDED.keys())
def test_ci_installs_the_packages_tests_need(packages: tuple[str, ...]) -> None:
    assert set(packages) <= set((REPO / ".ci" / "run").read_text().split())
