"""What h2load and wrk, the benchmark's load generators, print, read into numbers: tested on
outputs recorded from the real tools (tests/data/tool-output/), short runs and failed ones
included, so that a run the benchmark does not expect fails with the tool's own words."""

import re
from dataclasses import dataclass

# h2load prints a duration in the largest unit that keeps it at 1 or more, microseconds as a
# whole number (nghttp2 src/util.cc, format_duration): "2.00s", "998.44ms", "850us".
_DURATION_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


class ToolOutputError(ValueError):
    """The output lacks what a finished run prints."""


def _number(pattern: str, output: str, tool: str) -> str:
    match = re.search(pattern, output, re.MULTILINE)
    if match is None:
        raise ToolOutputError(f"{tool} printed no {pattern!r}; its output:\n{output}")
    return match.group(1)


@dataclass(frozen=True)
class H2loadSummary:
    started: int
    done: int
    failed: int
    errored: int
    status_2xx: int
    data_bytes: int
    seconds: float


def parse_h2load(output: str) -> H2loadSummary:
    duration = re.search(r"^finished in ([\d.]+)(s|ms|us),", output, re.MULTILINE)
    if duration is None:
        raise ToolOutputError(f"h2load printed no 'finished in <duration>'; its output:\n{output}")
    return H2loadSummary(
        started=int(_number(r"(\d+) started", output, "h2load")),
        done=int(_number(r"(\d+) done", output, "h2load")),
        failed=int(_number(r"(\d+) failed", output, "h2load")),
        errored=int(_number(r"(\d+) errored", output, "h2load")),
        status_2xx=int(_number(r"^status codes: (\d+) 2xx", output, "h2load")),
        data_bytes=int(_number(r"\((\d+)\) data", output, "h2load")),
        seconds=float(duration.group(1)) * _DURATION_UNITS[duration.group(2)],
    )


@dataclass(frozen=True)
class WrkSummary:
    requests_per_second: float
    non_2xx: int
    socket_errors: str | None
    # From its --latency distribution; None without that flag.
    p99_ms: float | None = None


_WRK_LATENCY_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> WrkSummary:
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.+)$", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)$", output, re.MULTILINE)
    return WrkSummary(
        requests_per_second=float(_number(r"^Requests/sec:\s+([\d.]+)", output, "wrk")),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors.group(1) if socket_errors else None,
        p99_ms=float(p99.group(1)) * _WRK_LATENCY_UNITS[p99.group(2)] if p99 else None,
    )
