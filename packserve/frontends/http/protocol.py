"""HTTP/1.1 over asyncio with the httptools parser: the transport under `HttpApp`.

Why not an ASGI server: on the infer hot path uvicorn spent about half of the event loop's time in
its per-request machinery and wrote each response with two socket writes (status line + headers,
then the body). Here one request is parsed by httptools' C parser straight into a path, a header
list and a body, handed to `HttpApp.handle`, and answered with a single `transport.write`.

One connection = one `HttpProtocol`. Requests on a connection are answered in order (HTTP/1.1
pipelining); reading pauses when too many wait. Runs on the event loop; one task per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import unquote

import httptools
import orjson

from packserve.frontends.http.app import HttpApp
from packserve.frontends.http.handlers import Reply
from packserve.frontends.http.limits import HttpLimits

_MAX_PIPELINED = 32
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_STATUS_LINES = {
    status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode()) for status in http.HTTPStatus
}


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


@dataclass(slots=True)
class _Request:
    method: str = ""
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body_parts: list[bytes] = field(default_factory=list)
    body_size: int = 0
    too_large: bool = False
    keep_alive: bool = True


class ConnectionTracker:
    """The server's view of its connections, for a graceful stop."""

    def __init__(self) -> None:
        self.connections: set[HttpProtocol] = set()
        self.idle = asyncio.Event()
        self.idle.set()
        self.busy = 0

    def request_started(self) -> None:
        self.busy += 1
        self.idle.clear()

    def request_finished(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self.idle.set()


class HttpProtocol(asyncio.Protocol):
    def __init__(self, app: HttpApp, limits: HttpLimits, tracker: ConnectionTracker) -> None:
        self._app = app
        self._limits = limits
        self._tracker = tracker
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._request = _Request()
        self._waiting: deque[_Request] = deque()
        self._current: asyncio.Task[None] | None = None
        self._reading = True
        # A request counts as accepted (and busy, for a graceful stop) from its first byte: one
        # still arriving when the server stops is read to the end and answered.
        self._receiving = False
        self.closing = False

    # ---- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not a subclass of asyncio.Transport, but has its methods.
        self._transport = transport  # type: ignore[assignment]
        self._tracker.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._tracker.connections.discard(self)
        for _ in range(len(self._waiting) + self._receiving):
            self._tracker.request_finished()
        self._waiting.clear()
        self._receiving = False
        self.closing = True
        if self._current is not None:
            # The client is gone: nobody can read the answer. The engine skips a cancelled
            # request that is still queued, and finishes one already executing.
            self._current.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed HTTP request: {exc}")

    # ---- httptools callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._request = _Request()
        self._receiving = True
        self._tracker.request_started()

    def on_url(self, url: bytes) -> None:
        self._request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._request.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        request = self._request
        for name, value in request.headers:
            if name == b"content-length":
                # A malformed Content-Length is the app's to answer (400).
                with contextlib.suppress(ValueError):
                    request.too_large = int(value) > self._limits.max_body_bytes
            elif name == b"expect" and value.lower() == b"100-continue" and not request.too_large:
                self._write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        request = self._request
        if request.too_large:
            return
        request.body_size += len(body)
        if request.body_size > self._limits.max_body_bytes:
            request.too_large = True
            request.body_parts.clear()
        else:
            request.body_parts.append(body)

    def on_message_complete(self) -> None:
        request = self._request
        request.method = self._parser.get_method().decode("latin-1")
        request.keep_alive = self._parser.should_keep_alive()
        self._receiving = False
        self._waiting.append(request)
        if len(self._waiting) > _MAX_PIPELINED and self._transport is not None and self._reading:
            self._reading = False
            self._transport.pause_reading()
        if self._current is None:
            self._start_next()

    # ---- answering -----------------------------------------------------------------------
    def _start_next(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # connection_lost releases what still waits
        if not self._waiting:
            if self.closing and not self._receiving:
                transport.close()
            return
        if not self._reading and len(self._waiting) <= _MAX_PIPELINED // 2:
            self._reading = True
            transport.resume_reading()
        request = self._waiting.popleft()
        self._current = asyncio.get_running_loop().create_task(self._answer(request))

    async def _answer(self, request: _Request) -> None:
        try:
            reply = await self._reply_for(request)
            transport = self._transport
            if transport is not None and not transport.is_closing():
                keep_alive = request.keep_alive and not self.closing
                transport.write(encode_reply(reply, keep_alive))
                if not keep_alive:
                    transport.close()
        finally:
            self._current = None
            self._tracker.request_finished()
            self._start_next()

    async def _reply_for(self, request: _Request) -> Reply:
        if request.too_large:
            request.keep_alive = False  # the rest of the body may still be on its way
            return Reply(
                413,
                orjson.dumps(
                    {"error": f"request body exceeds the limit of {self._limits.max_body_bytes} bytes"}
                ),
            )
        raw_path, _, _ = request.url.partition(b"?")
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        parts = request.body_parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        return await self._app.handle(request.method, path, request.headers, lambda: _ready(body))

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _fail(self, status: int, message: str) -> None:
        if self._transport is not None and not self._transport.is_closing():
            reply = Reply(status, orjson.dumps({"error": message}))
            self._transport.write(encode_reply(reply, keep_alive=False))
            self._transport.close()

    def close_when_idle(self) -> None:
        """Server stop: answer what is in progress (also a request still arriving), then close."""
        self.closing = True
        idle = self._current is None and not self._waiting and not self._receiving
        if idle and self._transport is not None:
            self._transport.close()


async def _ready(body: bytes) -> bytes:
    return body
