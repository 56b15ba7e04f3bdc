"""The benchmark's short mode, as a smoke test: every arm starts, is gated on right answers, and
the report is written (the full benchmark is tox -e bench); and the Go original's arms serve the
same RPC as gcd-server."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from processes import REPO

TOOLS = ("h2load", "wrk", "taskset")


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS), reason="needs h2load and wrk: apt-get install nghttp2-client wrk"
)
@pytest.mark.timeout(300)
def test_the_short_benchmark_finishes_with_a_report(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "bench" / "run.py"), "--rounds", "1", "--seconds", "1"]
    result = subprocess.run([*command, "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "results.md").read_text()
    for arm in ("grpc-direct", "rest-envoy", "grpc-envoy", "rest-gateway"):
        assert f"| {arm} |" in report
    # The Go original's arms run where Debian's Go packages are installed, as .ci/run does.
    go_ran = "| go-grpc-direct |" in report and "| rest-gin |" in report
    assert go_ran or "The Go original's arms did not run: missing" in report
    assert (tmp_path / "results.png").stat().st_size > 0
