"""HTTP/2 frames (RFC 9113) and the few HPACK blocks the native gRPC server sends, written by hand.

Only what a gRPC server needs: frame headers, SETTINGS, PING, GOAWAY, RST_STREAM, WINDOW_UPDATE,
and response header blocks. Blocks we send use HPACK's "literal without indexing" form (RFC 7541
6.2.2) with plain (non-Huffman) strings: they never touch the peer's dynamic table, so a block can
be computed once and sent on every stream of every connection. Blocks we receive are decoded by
the `hpack` package (see native_connection.py).
"""

from __future__ import annotations

import struct
from urllib.parse import quote

# Frame types.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)
# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# SETTINGS identifiers.
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6
# Error codes.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_WINDOW = 2**31 - 1
FRAME_HEADER_BYTES = 9
# A frame header read in one call: length (high byte, low 16 bits), type, flags, stream id.
FRAME_HEAD = struct.Struct(">BHBBL")
WORD = struct.Struct(">L")


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big") + payload


def settings_frame(settings: dict[int, int]) -> bytes:
    payload = b"".join(key.to_bytes(2, "big") + value.to_bytes(4, "big") for key, value in settings.items())
    return frame(SETTINGS, 0, 0, payload)


SETTINGS_ACK = frame(SETTINGS, ACK, 0)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big"))


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, code.to_bytes(4, "big"))


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, last_stream_id.to_bytes(4, "big") + code.to_bytes(4, "big") + debug)


def ping(opaque: bytes, ack: bool = False) -> bytes:
    return frame(PING, ACK if ack else 0, 0, opaque)


def data_frames(
    stream_id: int, payload: bytes | memoryview, max_frame: int, end_stream: bool = False
) -> bytes:
    """`payload` as DATA frames of at most `max_frame` bytes each (one frame when it fits)."""
    if len(payload) <= max_frame:
        return frame(DATA, END_STREAM if end_stream else 0, stream_id, bytes(payload))
    parts = []
    view = memoryview(payload)
    for start in range(0, len(view), max_frame):
        last = start + max_frame >= len(view)
        chunk = bytes(view[start : start + max_frame])
        parts.append(frame(DATA, END_STREAM if (last and end_stream) else 0, stream_id, chunk))
    return b"".join(parts)


# ---- HPACK, sending side ------------------------------------------------------------------------


def _integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """One header as "literal without indexing, new name", plain strings."""
    return b"\x00" + _integer(len(name), 7) + name + _integer(len(value), 7) + value


STATUS_200 = b"\x88"  # static table entry 8, ":status: 200"
RESPONSE_HEADERS = STATUS_200 + literal(b"content-type", b"application/grpc")
OK_TRAILERS = literal(b"grpc-status", b"0")


def headers_frame(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> bytes:
    """HEADERS (+CONTINUATION when the block is larger than the peer's frame size)."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return frame(HEADERS, flags | END_HEADERS, stream_id, block)
    chunks = [block[i : i + max_frame] for i in range(0, len(block), max_frame)]
    out = [frame(HEADERS, flags, stream_id, chunks[0])]
    for n, chunk in enumerate(chunks[1:], start=1):
        out.append(frame(CONTINUATION, END_HEADERS if n == len(chunks) - 1 else 0, stream_id, chunk))
    return b"".join(out)


# grpc-message is percent-encoded (gRPC over HTTP/2 spec): bytes outside 0x20-0x7E and '%' itself.
_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != ord("%"))


def status_block(code: int, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """Trailer fields of a call that ends with `code` (and the message when there is one)."""
    block = [literal(b"grpc-status", str(code).encode())]
    if message:
        block.append(literal(b"grpc-message", quote(message, safe=_MESSAGE_SAFE).encode("ascii")))
    block.extend(literal(name, value) for name, value in extra)
    return b"".join(block)
