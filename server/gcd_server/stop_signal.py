"""SIGTERM and SIGINT as something a thread can wait for.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread holds the lock inside threading.Event.wait(); a handler calling Event.set() then waits
for that lock forever (a server that ignores SIGTERM, seen once in CI). Here the handler does
nothing: the interpreter's C-level handler writes a byte to the wakeup socket, which takes no
lock, and waiting is a select() on that socket.
"""

import select
import signal
import socket

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignal:
    """Becomes set, for good, on the first SIGTERM or SIGINT. Create it in the main thread.

    The wakeup socket gets a byte for every signal that has a Python handler; only SIGTERM and
    SIGINT have one in gcd-server and gcd-stack, so any byte means stop."""

    def __init__(self) -> None:
        self._received, self._wakeup = socket.socketpair()
        self._wakeup.setblocking(False)
        signal.set_wakeup_fd(self._wakeup.fileno(), warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            # A Python-level handler must exist for the wakeup byte to be written (and for the
            # default action, exit or KeyboardInterrupt, not to happen); the byte is the signal.
            signal.signal(signum, lambda received, frame: None)

    def wait(self, timeout: float | None = None) -> bool:
        """True once a stop signal has arrived; False if timeout seconds pass first."""
        readable, _, _ = select.select([self._received], [], [], timeout)
        return bool(readable)
