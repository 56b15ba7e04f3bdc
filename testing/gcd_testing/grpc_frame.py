"""gRPC's length-prefixed message, as it travels in an HTTP/2 DATA frame."""

import struct


def grpc_frame(message: bytes, compressed: bool = False, declared_length: int | None = None) -> bytes:
    """A compressed flag and a 4-byte big-endian length, then the message; declared_length may
    lie about the length, for tests that send what clients should not."""
    length = len(message) if declared_length is None else declared_length
    return struct.pack(">BI", int(compressed), length) + message
