"""gRPC's length-prefixed message, as it travels in an HTTP/2 DATA frame."""

import struct


def grpc_frame(message: bytes, compressed: bool = False, declared_length: int | None = None) -> bytes:
    """A compressed flag and a 4-byte big-endian length, then the message; declared_length may
    lie about the length, for tests that send what clients should not."""
    length = len(message) if declared_length is None else declared_length
    return struct.pack(">BI", int(compressed), length) + message


# A gRPC-Web frame whose flag has this bit set carries the trailers, as HTTP/1.1 header lines.
GRPC_WEB_TRAILER_FLAG = 0x80


def grpc_web_frames(body: bytes) -> list[tuple[int, bytes]]:
    """The (flag, payload) frames of a gRPC-Web answer's body."""
    found = []
    while body:
        flag, length = struct.unpack(">BI", body[:5])
        found.append((flag, body[5 : 5 + length]))
        body = body[5 + length :]
    return found


def grpc_web_trailers(payload: bytes) -> dict[str, str]:
    """The fields of a gRPC-Web trailer frame's payload."""
    lines = [line.split(":", 1) for line in payload.decode().split("\r\n") if line]
    return {name.strip().lower(): value.strip() for name, value in lines}
