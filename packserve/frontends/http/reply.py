"""What an HTTP answer is (`Reply`) and its bytes on the wire (`encode_reply`): status line,
headers and body in one buffer, so a response leaves in one socket write.

Used by every route handler, the console and the protocol; runs on the event loop.
"""

from __future__ import annotations

import http
from dataclasses import dataclass

import orjson

JSON = b"application/json"
OCTET_STREAM = b"application/octet-stream"

_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode()) for status in http.HTTPStatus
}


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: bytes = JSON
    header_length: int | None = None  # Inference-Header-Content-Length, for binary outputs
    headers: tuple[tuple[bytes, bytes], ...] = ()  # any others (the console's pages set a few)


def error_reply(status: int, message: str) -> Reply:
    """Every error's body: {"error": message}."""
    return Reply(status, orjson.dumps({"error": message}))


def encode_reply(reply: Reply, keep_alive: bool) -> bytes:
    """Status line, headers and body as one buffer, so the response leaves in one write."""
    head = [
        _STATUS_LINES.get(reply.status) or b"HTTP/1.1 %d Unknown\r\n" % reply.status,
        b"content-type: ",
        reply.content_type,
        b"\r\ncontent-length: %d\r\n" % len(reply.body),
    ]
    if reply.header_length is not None:
        head.append(b"inference-header-content-length: %d\r\n" % reply.header_length)
    for name, value in reply.headers:
        head.append(b"%s: %s\r\n" % (name, value))
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    head.append(reply.body)
    return b"".join(head)
