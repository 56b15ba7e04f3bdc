"""StopSignal must wake its waiter however the signal lands: a handler that set a threading.Event
could arrive while the waiting thread held the event's lock, and the process never stopped."""

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Waits in short slices, so the waiting thread is inside select() or between two calls of it
# when each signal arrives: the pattern that hung the Event-based handler.
_WAITER = """
from gcd_server.stop_signal import StopSignal
stop = StopSignal()
print("waiting", flush=True)
while not stop.wait(0.0001):
    pass
print("stopped", flush=True)
input()  # Exits when the test says: a signal after the interpreter's shutdown would kill it.
"""


@contextmanager
def waiting(script: str) -> Iterator[subprocess.Popen[str]]:
    """script running, once its StopSignal waits; killed on the way out if still alive."""
    waiter = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert waiter.stdout is not None
        assert waiter.stdout.readline() == "waiting\n"
        yield waiter
    finally:
        waiter.kill()
        waiter.wait()


def test_a_burst_of_signals_stops_a_waiter_that_keeps_waking() -> None:
    with waiting(_WAITER) as waiter:
        for _ in range(200):
            waiter.send_signal(signal.SIGTERM)
            time.sleep(0.0005)
        assert waiter.stdout is not None
        assert waiter.stdout.readline() == "stopped\n"
        assert waiter.communicate("\n", timeout=10)[0] == ""
        assert waiter.returncode == 0


def test_stays_set_once_a_signal_came() -> None:
    with waiting(_WAITER + "assert stop.wait(0) and stop.wait(0)\n") as waiter:
        waiter.send_signal(signal.SIGINT)
        assert waiter.communicate("\n", timeout=10)[0] == "stopped\n"
        assert waiter.returncode == 0
