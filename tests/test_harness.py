"""The suite's own machinery says why a start failed, and one failed start costs one test."""

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import conftest
import pytest

from gcd_stack.ports import Ports
from gcd_stack.processes import StartError

from processes import running, wait_for_start

FAILING = "import sys; print('an access log line'); print('critical: cannot start', file=sys.stderr); sys.exit(3)"


def test_a_failed_start_shows_the_processs_own_output(tmp_path: Path) -> None:
    with running([sys.executable, "-c", FAILING], tmp_path, "envoy") as process, pytest.raises(StartError) as failed:
        wait_for_start(process, lambda: False, tmp_path, "envoy")
    message = str(failed.value)
    assert "envoy exited with code 3 while starting" in message
    assert "critical: cannot start" in message and "an access log line" in message


def test_a_failed_start_of_the_shared_stack_fails_only_the_test_that_asked(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[Path] = []

    @contextmanager
    def flaky_stack(log_dir: Path) -> Iterator[tuple[Ports, subprocess.Popen[bytes]]]:
        attempts.append(log_dir)
        if len(attempts) == 1:
            raise StartError("Envoy exited with code -6 while starting")
        with running([sys.executable, "-c", "import time; time.sleep(30)"], log_dir, "stack") as process:
            yield Ports(envoy=1, grpc=2, sidecar=3, envoy_metrics=4, envoy_probes=5, metrics=6), process

    monkeypatch.setattr(conftest, "running_stack", flaky_stack)
    shared = conftest.SharedStack(tmp_path_factory)
    try:
        with pytest.raises(StartError):
            shared.started()
        ports, process = shared.started()
        assert ports.envoy == 1 and process.poll() is None
        assert shared.started()[1] is process, "a running stack is shared, not started again"
    finally:
        shared.close()
    assert len(attempts) == 2 and process.poll() is not None
