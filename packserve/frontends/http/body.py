"""Reading an ASGI request body under the size limits, and undoing its Content-Encoding.

Runs on the event loop, inside one request's ASGI call; nothing here outlives the request.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from packserve.errors import InvalidArgumentError, ResourceExhaustedError
from packserve.frontends.http.limits import HttpLimits

Receive = Callable[[], Awaitable[dict[str, Any]]]

# zlib window bits: 16 + 15 expects a gzip wrapper, 15 a zlib wrapper (HTTP "deflate").
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_INFLATE_STEP = 1024 * 1024


class ClientDisconnected(Exception):
    """The client went away before its body arrived; nothing is left to answer."""


def check_declared_length(content_length: bytes | None, limits: HttpLimits) -> None:
    """Refuse a body whose Content-Length is already over the limit, before reading any of it."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise InvalidArgumentError(f"invalid Content-Length header {content_length!r}") from None
    if declared > limits.max_body_bytes:
        raise ResourceExhaustedError(
            f"request body of {declared} bytes exceeds the limit of {limits.max_body_bytes} bytes"
        )


async def read_body(receive: Receive, limits: HttpLimits) -> bytes:
    """The whole body, counted while it streams in (chunked bodies carry no Content-Length)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        # The common case: one chunk, handed on without a copy.
        if len(body) > limits.max_body_bytes:
            raise _body_too_large(len(body), limits)
        return body
    chunks = [body]
    total = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limits.max_body_bytes:
            raise _body_too_large(total, limits)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _body_too_large(size: int, limits: HttpLimits) -> ResourceExhaustedError:
    return ResourceExhaustedError(
        f"request body of at least {size} bytes exceeds the limit of {limits.max_body_bytes} bytes"
    )


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
