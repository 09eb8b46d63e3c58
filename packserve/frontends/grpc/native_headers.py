"""Request header blocks of the native gRPC transport: HPACK-decoded by the `hpack` package, then
read into what a call needs (path, deadline, encoding, metadata).

A client repeating a call usually sends a block made only of indexed fields (RFC 7541 6.1): such a
block does not change the decoder's dynamic table, so the same bytes always decode to the same
headers until some other block changes the table. The last such block is kept with its reading, and
an identical block skips HPACK and the header loop: the common case of a load generator.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import hpack

_HIGH_BIT_BYTES = bytes(range(0x80, 0x100))  # an indexed field's first byte has the high bit set
_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}
# Headers of the gRPC protocol itself, not metadata the servicers see.
_PROTOCOL_HEADERS = frozenset(
    (b"content-type", b"te", b"grpc-timeout", b"grpc-encoding", b"grpc-accept-encoding")
)
_PSEUDO = frozenset((b":path", b":method", b":scheme", b":authority"))
# Each field counts its name, value and 32 bytes (RFC 9113 6.5.2), as grpc's metadata limit does.
_FIELD_OVERHEAD = 32


class MalformedRequest(Exception):
    """A header block that is valid HPACK but not a valid gRPC request (a stream error)."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    path: str
    metadata: tuple[tuple[str, str | bytes], ...]
    timeout_s: float | None
    encoding: bytes  # b"" or b"identity" when not compressed
    grpc_content_type: bool
    size: int  # the header list's size by RFC 9113's measure


class HeaderReader:
    """One per connection: HPACK state is per connection."""

    def __init__(self, max_list_bytes: int) -> None:
        # A hard stop well above the metadata limit: a block that inflates past it (a few bytes that
        # reference one big table entry again and again) ends the connection before it costs memory.
        self._decoder = hpack.Decoder(max_header_list_size=4 * max_list_bytes + 4096)
        self._cached_block = b""
        self._cached_head: RequestHead | None = None

    def request_head(self, block: bytes) -> RequestHead:
        """The head of a new call. Raises hpack.HPACKError (connection error) or MalformedRequest."""
        if block == self._cached_block and self._cached_head is not None:
            return self._cached_head
        fields = self._decoder.decode(block, raw=True)
        pure_indexed = not block.translate(None, _HIGH_BIT_BYTES)
        head = _read_head(fields)  # type: ignore[arg-type]
        self._cached_block, self._cached_head = (block, head) if pure_indexed else (b"", None)
        return head

    def trailers(self, block: bytes) -> None:
        """A client's trailing block: decoded only to keep the HPACK state in step."""
        self._decoder.decode(block, raw=True)
        if block.translate(None, _HIGH_BIT_BYTES):
            self._cached_block, self._cached_head = b"", None


def _read_head(fields: list[tuple[bytes, bytes]]) -> RequestHead:
    path = method = content_type = encoding = b""
    timeout: float | None = None
    metadata: list[tuple[str, str | bytes]] = []
    size = 0
    for name, value in fields:
        size += len(name) + len(value) + _FIELD_OVERHEAD
        if name[:1] == b":":
            if name not in _PSEUDO:
                raise MalformedRequest(f"unknown pseudo-header {name!r}")
            if name == b":path":
                path = value
            elif name == b":method":
                method = value
        elif name in _PROTOCOL_HEADERS:
            if name == b"content-type":
                content_type = value
            elif name == b"grpc-timeout":
                timeout = parse_timeout(value)
            elif name == b"grpc-encoding":
                encoding = value
        elif name.endswith(b"-bin"):
            metadata.append((name.decode("latin-1"), _unbase64(value)))
        else:
            metadata.append((name.decode("latin-1"), value.decode("latin-1")))
    if method != b"POST" or not path:
        raise MalformedRequest("a gRPC request is a POST with a :path")
    return RequestHead(
        path=path.decode("latin-1"),
        metadata=tuple(metadata),
        timeout_s=timeout,
        encoding=encoding,
        grpc_content_type=content_type.startswith(b"application/grpc"),
        size=size,
    )


def parse_timeout(value: bytes) -> float:
    """grpc-timeout: at most 8 digits and a unit (gRPC over HTTP/2, "Timeout")."""
    digits, unit = value[:-1], value[-1:]
    if not digits.isdigit() or len(digits) > 8 or unit not in _TIMEOUT_UNITS:
        raise MalformedRequest(f"bad grpc-timeout {value!r}")
    return int(digits) * _TIMEOUT_UNITS[unit]


def _unbase64(value: bytes) -> bytes:
    # Senders may leave out the padding (gRPC over HTTP/2, "Custom-Metadata").
    try:
        return base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
    except binascii.Error:
        raise MalformedRequest("binary metadata is not base64") from None
