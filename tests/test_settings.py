"""gcd-server's flags and environment variables."""

import re

import pytest

from gcd_server.settings import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_HOST,
    DEFAULT_MAX_CONCURRENT_RPCS,
    DEFAULT_METRICS_PORT,
    DEFAULT_PORT,
    Settings,
    parse_settings,
)

from processes import REPO

ENV_VARS = (
    "GCD_HOST",
    "GCD_PORT",
    "GCD_GRACE_SECONDS",
    "GCD_LOG_LEVEL",
    "GCD_MAX_CONCURRENT_RPCS",
    "GCD_ENVOY_ADMIN",
    "GCD_METRICS_PORT",
    "GCD_SIDECAR_PORT",
    "GCD_CLIENT_DRAIN_SECONDS",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    assert parse_settings([]) == Settings(
        host=DEFAULT_HOST,
        port=DEFAULT_PORT,
        grace_seconds=DEFAULT_GRACE_SECONDS,
        log_level="INFO",
        max_concurrent_rpcs=DEFAULT_MAX_CONCURRENT_RPCS,
        envoy_admin=None,
        metrics_port=DEFAULT_METRICS_PORT,
        sidecar_port=0,
        client_drain_seconds=0,
    )
    assert (DEFAULT_PORT, DEFAULT_METRICS_PORT) == (3000, 9103)


def test_environment_sets_each_value(monkeypatch: pytest.MonkeyPatch) -> None:
    values = ("127.0.0.1", "3100", "2.5", "debug", "7", "@gcd-envoy-admin", "0", "3101", "38")
    for name, value in zip(ENV_VARS, values, strict=True):
        monkeypatch.setenv(name, value)
    assert parse_settings([]) == Settings(
        host="127.0.0.1",
        port=3100,
        grace_seconds=2.5,
        log_level="DEBUG",
        max_concurrent_rpcs=7,
        envoy_admin="@gcd-envoy-admin",
        metrics_port=0,
        sidecar_port=3101,
        client_drain_seconds=38,
    )


def test_flag_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCD_PORT", "3100")
    assert parse_settings(["--port", "3200"]).port == 3200


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "0"], "'0' is not a TCP port"),
        (["--port", "65536"], "'65536' is not a TCP port"),
        (["--port", "http"], "'http' is not a TCP port"),
        (["--grace", "-1"], "'-1' is not a number of seconds"),
        (["--grace", "soon"], "'soon' is not a number of seconds"),
        (["--grace", "inf"], "'inf' is not a number of seconds"),
        (["--log-level", "loud"], "'loud' is not one of DEBUG, INFO, WARNING, ERROR"),
        (["--envoy-admin", "http://127.0.0.1:9901"], "'http://127.0.0.1:9901' is not a unix socket"),
    ],
)
def test_bad_flag_exits_2_with_reason(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GCD_PORT", "abc")
    with pytest.raises(SystemExit) as exit_info:
        parse_settings([])
    assert exit_info.value.code == 2
    assert "GCD_PORT='abc'" in capsys.readouterr().err


def test_help_names_every_flag_and_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("--host", "--port", "--grace", "--log-level", "SIGTERM", *ENV_VARS):
        assert word in text


def test_ipv6_host_is_bracketed() -> None:
    assert Settings(host="::1", port=3000, grace_seconds=1, log_level="INFO").address == "[::1]:3000"
    assert Settings(host="[::]", port=3000, grace_seconds=1, log_level="INFO").address == "[::]:3000"


def test_the_docs_show_the_usage_and_every_flag_as_they_are(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        parse_settings(["--help"])
    usage = capsys.readouterr().out.split("\n\n")[0]
    readme = (REPO / "docs" / "operations.md").read_text()
    assert f"$ gcd-server --help\n{usage}\n" in readme, "docs/operations.md: gcd-server usage is out of date"
    flags = re.findall(r"\[(--[a-z-]+)", usage)
    rows = re.findall(r"^\| `(--[a-z-]+)` \| `(GCD_[A-Z_]+)` \|", readme, re.MULTILINE)
    assert sorted(flag for flag, _ in rows) == sorted(flags)
    assert {variable for _, variable in rows} == set(ENV_VARS)
