"""HTTP/1.1 over asyncio with the httptools parser: the transport under `HttpApp`.

Why not an ASGI server: on the infer hot path uvicorn spent about half of the event loop's time in
its per-request machinery and wrote each response with two socket writes (status line + headers,
then the body). Here one request is parsed by httptools' C parser straight into a path, a header
list and a body, handed to `HttpApp.handle`, and answered with a single `transport.write`.

One connection = one `HttpProtocol`. Requests on a connection are answered in order (HTTP/1.1
pipelining); reading pauses when too many wait, and answering (and so reading) pauses while the
client leaves what was written unread. The limits of `ConnectionLimits` (sizes, timeouts, the
connection cap) apply per connection, so one slow or hostile client never holds up the others.
Runs on the event loop; one task per request, one timer per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import unquote

import httptools

from packserve.frontends.http.app import HttpApp
from packserve.frontends.http.connections import ConnectionLimits, ConnectionTracker
from packserve.frontends.http.limits import HttpLimits
from packserve.frontends.http.reply import Reply, encode_reply, error_reply

_MAX_PIPELINED = 32
_MAX_PIPELINED_BYTES = 16 * 1024 * 1024  # request bodies waiting behind the one being answered
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HEALTH_URLS = (b"/v2/health/live", b"/v2/health/ready")


@dataclass(slots=True)
class _Request:
    method: str = ""
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body_parts: list[bytes] = field(default_factory=list)
    body_size: int = 0
    too_large: bool = False
    keep_alive: bool = True


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request that broke a limit."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpProtocol(asyncio.Protocol):
    def __init__(
        self,
        app: HttpApp,
        limits: HttpLimits,
        tracker: ConnectionTracker,
        conn: ConnectionLimits | None = None,
    ) -> None:
        self._app = app
        self._limits = limits
        self._conn = conn or ConnectionLimits()
        self._tracker = tracker
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._request = _Request()
        self._waiting: deque[_Request] = deque()
        self._waiting_bytes = 0
        self._current: asyncio.Task[None] | None = None
        self._reading = True
        # A request counts as accepted (and busy, for a graceful stop) from its first byte: one
        # still arriving when the server stops is read to the end and answered.
        self._receiving = False
        self.closing = False
        # Where the connection stands, for its one timer (see _deadline).
        self._in_head = False  # a request has begun and its headers are not complete
        self._in_body = False  # headers complete, body not
        self._head_bytes = 0  # chunks received while only the head was arriving
        self._header_text = 0  # names and values of the headers parsed so far
        self._phase_start = 0.0  # when the head began / the last body bytes came
        self.idle_since: float | None = None  # nothing in progress or half-received since then
        self._served_any = False
        self._write_paused_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # ---- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport is not a subclass of asyncio.Transport, but has its methods.
        self._transport = transport  # type: ignore[assignment]
        if not self._tracker.admit():
            self.closing = True
            self._fail(503, f"the server has {len(self._tracker.connections)} connections open, its limit")
            return
        self._tracker.connections.add(self)
        self._transport.set_write_buffer_limits(high=self._conn.write_buffer_high_bytes)  # type: ignore[union-attr]
        self.idle_since = self._loop.time()
        self._rearm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._tracker.connections.discard(self)
        for _ in range(len(self._waiting) + self._receiving):
            self._tracker.request_finished()
        if self._request.body_size:  # a body cut off half-way: let its memory go back
            self._tracker.memory.body_dropped(self._request.body_size)
        self._request = _Request()
        self._waiting.clear()
        self._receiving = False
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._current is not None:
            # The client is gone: nobody can read the answer. The engine skips a cancelled
            # request that is still queued, and finishes one already executing.
            self._current.cancel()

    def data_received(self, data: bytes) -> None:
        whole_chunk_is_head = self._in_head
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._fail(cause.status, str(cause))
            else:
                raise
            return
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
            return
        except httptools.HttpParserError as exc:
            self._fail(400, f"malformed HTTP request: {exc}")
            return
        if self._in_head and whole_chunk_is_head:
            # httptools buffers header lines until they end: bound them by what arrives.
            self._head_bytes += len(data)
            if self._head_bytes > self._conn.max_header_bytes + self._conn.max_request_line_bytes:
                self._fail(431, f"request headers exceed {self._conn.max_header_bytes} bytes")
        elif self._in_body:
            self._phase_start = self._loop.time()

    def pause_writing(self) -> None:
        # The client is not reading: answer nothing more (and so read nothing more) until it does.
        self._write_paused_since = self._loop.time()
        self._rearm()

    def resume_writing(self) -> None:
        self._write_paused_since = None
        if self._current is None:
            self._start_next()

    # ---- httptools callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._request = _Request()
        self._receiving = True
        self._tracker.request_started()
        self._in_head, self._head_bytes, self._header_text = True, 0, 0
        self.idle_since = None
        self._phase_start = self._loop.time()
        self._rearm()

    def on_url(self, url: bytes) -> None:
        request = self._request
        request.url += url
        if len(request.url) > self._conn.max_request_line_bytes:
            raise _Refused(414, f"request URL exceeds {self._conn.max_request_line_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._request.headers
        headers.append((name.lower(), value))
        self._header_text += len(name) + len(value)
        if len(headers) > self._conn.max_headers:
            raise _Refused(431, f"request has more than {self._conn.max_headers} headers")
        if self._header_text > self._conn.max_header_bytes:
            raise _Refused(431, f"request headers exceed {self._conn.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._in_head, self._in_body = False, True
        self._phase_start = self._loop.time()
        request = self._request
        for name, value in request.headers:
            if name == b"content-length":
                # The parser refuses a malformed Content-Length itself (400); this is the one
                # check of the body limit, here and in on_body.
                with contextlib.suppress(ValueError):
                    request.too_large = int(value) > self._limits.max_body_bytes
            elif name == b"expect" and value.lower() == b"100-continue" and not request.too_large:
                self._write(_CONTINUE)
        if request.too_large and self._current is None and not self._waiting:
            # Refuse now rather than read (or wait for) a body that will be thrown away. Behind
            # pipelined requests the 413 waits its turn instead (answers keep their order).
            raise _Refused(413, f"request body exceeds the limit of {self._limits.max_body_bytes} bytes")
        self._rearm()

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
        self._in_body = False
        request, self._request = self._request, _Request()
        request.method = self._parser.get_method().decode("latin-1")
        request.keep_alive = self._parser.should_keep_alive()
        self._receiving = False
        if self._current is None and not self._waiting and request.url in _HEALTH_URLS:
            # Probes are answered here and now, ahead of inference work (no task, no queue).
            reply = self._app.health_now(request.method, request.url.decode(), request.headers)
            if reply is not None and self._transport is not None:
                keep_alive = request.keep_alive and not self.closing
                self._transport.write(encode_reply(reply, keep_alive))
                self._served_any = True
                self._tracker.request_finished()
                if not keep_alive:
                    self._transport.close()
                else:
                    self.idle_since = self._loop.time()
                return
        self._waiting.append(request)
        self._waiting_bytes += request.body_size
        if (
            len(self._waiting) > _MAX_PIPELINED or self._waiting_bytes > _MAX_PIPELINED_BYTES
        ) and self._reading:
            self._pause_reading()
        if self._current is None:
            self._start_next()

    # ---- answering -----------------------------------------------------------------------
    def _start_next(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or self._write_paused_since is not None:
            return  # connection_lost releases what still waits; resume_writing comes back here
        if not self._waiting:
            if self.closing and not self._receiving:
                transport.close()
                return
            if not self._receiving:
                self.idle_since = self._loop.time()
            if not self._reading:
                self._resume_reading()
            self._rearm()
            return
        if not self._reading and len(self._waiting) <= _MAX_PIPELINED // 2:
            self._resume_reading()
        request = self._waiting.popleft()
        self._waiting_bytes -= request.body_size
        self._current = self._loop.create_task(self._answer(request))

    async def _answer(self, request: _Request) -> None:
        try:
            reply = await self._reply_for(request)
            transport = self._transport
            if transport is not None and not transport.is_closing():
                keep_alive = request.keep_alive and not self.closing
                transport.write(encode_reply(reply, keep_alive))
                self._served_any = True
                if not keep_alive:
                    transport.close()
        finally:
            self._current = None
            self._tracker.request_finished()
            self._start_next()

    async def _reply_for(self, request: _Request) -> Reply:
        if request.too_large:
            request.keep_alive = False  # the rest of the body may still be on its way
            return error_reply(413, f"request body exceeds the limit of {self._limits.max_body_bytes} bytes")
        raw_path, _, _ = request.url.partition(b"?")
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        parts = request.body_parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        request.body_parts = []
        return await self._app.handle(request.method, path, request.headers, body)

    def _pause_reading(self) -> None:
        if self._transport is not None:
            self._reading = False
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._transport is not None and not self.closing:
            self._reading = True
            self._transport.resume_reading()
            self._phase_start = self._loop.time()  # silence while we did not read is not the client's

    # ---- timeouts ------------------------------------------------------------------------
    def _deadline(self) -> tuple[float, int] | None:
        """When this connection times out and the status to answer (0: close silently)."""
        conn = self._conn
        if self._write_paused_since is not None:
            return self._write_paused_since + conn.send_timeout_s, 0
        if self._reading and self._in_head:
            return self._phase_start + conn.header_timeout_s, 408
        if self._reading and self._in_body:
            return self._phase_start + conn.body_timeout_s, 408
        if self.idle_since is not None and self._current is None and not self._waiting:
            # A fresh connection must send its first request as promptly as a header.
            wait = conn.keep_alive_timeout_s if self._served_any else conn.header_timeout_s
            return self.idle_since + wait, 0
        return None  # a request is being answered: its own deadlines apply

    def _rearm(self) -> None:
        deadline = self._deadline()
        if deadline is None or self.closing:
            return
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline[0]:
                return  # fires first and looks again
            timer.cancel()
        self._timer = self._loop.call_at(deadline[0], self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline()
        if deadline is None or self.closing:
            return
        when, status = deadline
        if self._loop.time() < when:
            self._timer = self._loop.call_at(when, self._on_timer)
        elif status:
            self.closing = True
            phase = "headers" if self._in_head else "body"
            self._fail(status, f"timed out waiting for the request {phase}")
        elif self._transport is not None:
            self.closing = True
            if self._write_paused_since is not None:
                self._transport.abort()  # a client that does not read will not read a goodbye
            else:
                self._transport.close()

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _fail(self, status: int, message: str) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(encode_reply(error_reply(status, message), keep_alive=False))
            self._transport.close()
        self.closing = True

    def close_idle(self) -> None:
        """Make room at the connection cap: close this idle keep-alive connection."""
        self.closing = True
        if self._transport is not None:
            self._transport.close()

    def close_when_idle(self) -> None:
        """Server stop: answer what is in progress (also a request still arriving), then close."""
        self.closing = True
        idle = self._current is None and not self._waiting and not self._receiving
        if idle and self._transport is not None:
            self._transport.close()
