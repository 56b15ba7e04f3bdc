"""The benchmark's readers of h2load and wrk output, on outputs recorded from the real tools."""

from pathlib import Path

import pytest

from gcd_testing.tool_output import ToolOutputError, parse_h2load, parse_wrk

RECORDED = Path(__file__).parent / "data" / "tool-output"


def recorded(name: str) -> str:
    return (RECORDED / f"{name}.txt").read_text()


def test_a_run_of_seconds() -> None:
    summary = parse_h2load(recorded("h2load-seconds"))
    assert summary.seconds == 2.00
    assert summary.done == summary.status_2xx > 0 and summary.failed == summary.errored == 0


def test_a_run_under_a_second_is_read_in_milliseconds() -> None:
    """h2load prints "finished in 113.45ms" for a short run: the warm-up of every benchmark."""
    summary = parse_h2load(recorded("h2load-subsecond"))
    assert summary.seconds == pytest.approx(0.11345)
    assert (summary.started, summary.done, summary.status_2xx, summary.data_bytes) == (200, 200, 200, 2800)


def test_microseconds_are_read_too() -> None:
    output = recorded("h2load-subsecond").replace("finished in 113.45ms", "finished in 850us")
    assert parse_h2load(output).seconds == pytest.approx(0.00085)


def test_a_run_that_could_not_connect_reads_as_all_failed() -> None:
    summary = parse_h2load(recorded("h2load-refused"))
    assert (summary.done, summary.failed, summary.errored, summary.status_2xx) == (0, 50, 50, 0)


def test_4xx_answers_are_not_2xx() -> None:
    summary = parse_h2load(recorded("h2load-4xx"))
    assert summary.done == 100 and summary.status_2xx == 0


def test_output_without_a_result_fails_with_the_tools_words() -> None:
    with pytest.raises(ToolOutputError, match=r"(?s)h2load printed no 'finished in <duration>'.*Connection refused"):
        parse_h2load("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_rate_and_errors() -> None:
    ok = parse_wrk(recorded("wrk-ok"))
    assert ok.requests_per_second == 2329.38 and ok.non_2xx == 0 and ok.socket_errors is None
    assert parse_wrk(recorded("wrk-non2xx")).non_2xx == 5775
    with pytest.raises(ToolOutputError, match=r"(?s)wrk printed no .*Connection refused"):
        parse_wrk(recorded("wrk-refused"))


def test_wrk_latency_distribution() -> None:
    assert parse_wrk(recorded("wrk-latency")).p99_ms == 1.95
    assert parse_wrk(recorded("wrk-ok")).p99_ms is None
