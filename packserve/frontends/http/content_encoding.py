"""Undoing a request body's Content-Encoding (gzip, deflate) under max_inflated_bytes.

The body's size on the wire is bounded by the protocol while it arrives (max_body_bytes); this is
the bound after decoding. Runs on the event loop, inside one request; nothing here outlives it.
"""

from __future__ import annotations

import zlib

from packserve.errors import InvalidArgumentError, ResourceExhaustedError
from packserve.frontends.http.limits import HttpLimits

# zlib window bits: 16 + 15 expects a gzip wrapper, 15 a zlib wrapper (HTTP "deflate").
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_INFLATE_STEP = 1024 * 1024


def inflate(body: bytes, encoding: str, limits: HttpLimits) -> bytes:
    """Decode a gzip/deflate body, stopping as soon as the output would pass max_inflated_bytes,
    so a small compressed bomb never becomes a large allocation."""
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise InvalidArgumentError(
            f"unsupported Content-Encoding {encoding!r}; expected one of gzip, deflate, identity"
        )
    decoder = zlib.decompressobj(wbits)
    out = bytearray()
    pending: bytes = body
    try:
        while not decoder.eof:
            room = limits.max_inflated_bytes + 1 - len(out)
            chunk = decoder.decompress(pending, min(room, _INFLATE_STEP))
            out += chunk
            if len(out) > limits.max_inflated_bytes:
                raise ResourceExhaustedError(
                    f"{encoding} request body inflates past the limit of {limits.max_inflated_bytes} bytes"
                )
            pending = decoder.unconsumed_tail
            if not chunk and not pending:
                break  # input used up and nothing buffered: the stream never ended
        if not decoder.eof:
            raise InvalidArgumentError(f"{encoding} request body is truncated")
    except zlib.error as exc:
        raise InvalidArgumentError(f"request body is not valid {encoding} data: {exc}") from None
    if decoder.unused_data:
        raise InvalidArgumentError(f"unexpected bytes after the end of the {encoding} request body")
    return bytes(out)
