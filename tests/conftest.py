import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gcd_stack.ports import Ports

from figures import FIGURES
from processes import running_server, running_stack


@pytest.fixture
def server_port(tmp_path: Path) -> Iterator[int]:
    """A gcd-server of its own, on a free loopback port, serving."""
    with running_server(tmp_path) as (port, _):
        yield port


@pytest.fixture(scope="session")
def stack_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Ports, subprocess.Popen[bytes]]]:
    """One gcd-stack (server and Envoy) shared by the tests that only send it requests."""
    with running_stack(tmp_path_factory.mktemp("stack")) as started:
        yield started


@pytest.fixture(scope="session")
def stack_ports(stack_process: tuple[Ports, subprocess.Popen[bytes]]) -> Ports:
    """The ports of the shared gcd-stack."""
    return stack_process[0]


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[tuple[Ports, subprocess.Popen[bytes]]]:
    """A gcd-stack of its own, which a test may break or stop; logs in tmp_path/stack.*."""
    with running_stack(tmp_path) as started:
        yield started


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Under pytest-xdist each worker measures its own tests: hand the figures to the controller.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["figures"] = dict(FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the xdist controller: the figures a worker measured (xdist's hook, not pytest's)."""
    FIGURES.update(node.workeroutput.get("figures", {}))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("figures measured by this run")
    width = max(map(len, FIGURES))
    terminalreporter.write_line(f"| {'figure'.ljust(width)} | value |")
    terminalreporter.write_line(f"|{'-' * (width + 2)}|-------|")
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"| {name.ljust(width)} | {value} |")
