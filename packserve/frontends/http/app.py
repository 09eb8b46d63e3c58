"""The ASGI application: route by splitting the path once, read the body under limits, call one
handler, send one reply. No framework: this is the hot path of every HTTP request.

Runs on the event loop (packserve.frontends.http.protocol, or any ASGI server); one call per HTTP request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from packserve.core.engine_api import EngineApi
from packserve.errors import PackserveError
from packserve.frontends import header_forward, request_log
from packserve.frontends.http import body as body_io
from packserve.frontends.http import handlers, pipeline_route
from packserve.frontends.http.console import ConsoleAssets
from packserve.frontends.http.handlers import Reply
from packserve.frontends.http.infer_codec import InferDecoder
from packserve.frontends.http.limits import HttpLimits
from packserve.frontends.restrictions import Restrictions
from packserve.frontends.status import http_status

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# Header names lower-case, as ASGI and httptools give them.
Headers = Sequence[tuple[bytes, bytes]]
ReadBody = Callable[[], Awaitable[bytes]]

logger = logging.getLogger(__name__)

_GET = "GET"
_POST = "POST"
_MODEL_GETS = {
    "": handlers.model_metadata,
    "ready": handlers.model_ready,
    "config": handlers.model_config,
    "stats": handlers.model_statistics,
}

_HEALTH = {"/v2/health/live": handlers.live, "/v2/health/ready": handlers.ready}


class _RouteError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_NOT_FOUND = _RouteError(404, "Not Found")
_METHOD_NOT_ALLOWED = _RouteError(405, "Method Not Allowed")


def _error_reply(status: int, message: str) -> Reply:
    return Reply(status, orjson.dumps({"error": message}))


class HttpApp:
    """`create_http_app` returns one of these; it is an ASGI 3 callable."""

    def __init__(
        self,
        engine: EngineApi,
        limits: HttpLimits,
        console: ConsoleAssets | None = None,
        restrictions: Restrictions | None = None,
    ) -> None:
        self._engine = engine
        self._limits = limits
        self._console = console
        self._restrictions = restrictions or Restrictions()
        self._decoder = InferDecoder(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            limits = self._limits
            try:
                reply = await self.handle(
                    scope["method"],
                    scope["path"],
                    scope["headers"],
                    lambda: body_io.read_body(receive, limits),
                )
            except body_io.ClientDisconnected:
                return
            await _send_reply(send, reply)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    def health_now(self, method: str, path: str, headers: Headers) -> Reply | None:
        """The answer to a liveness / readiness probe, computed at once (no task, no await), so
        the transport can send it ahead of inference work; None for any other request."""
        if method != _GET or path not in _HEALTH:
            return None
        if self._restrictions:
            refusal = self._restrictions.http_refusal(path, headers)
            if refusal is not None:
                return _error_reply(403, refusal)
        return _HEALTH[path](self._engine)

    async def handle(self, method: str, path: str, headers: Headers, read_body: ReadBody) -> Reply:
        """Answer one request. `read_body` returns the raw body, already checked against
        max_body_bytes while it arrived. Every error becomes a reply; nothing escapes but
        ClientDisconnected."""
        if self._restrictions:  # --http-restricted-api: checked before anything else runs
            refusal = self._restrictions.http_refusal(path, headers)
            if refusal is not None:
                request_log.FAILED.failed("HTTP", f"{method} {path}", PermissionError(refusal), 403)
                return _error_reply(403, refusal)
        started = time.perf_counter() if request_log.verbosity() else 0.0
        try:
            reply = await self._route(method, path, headers, read_body)
        except PackserveError as exc:
            reply = _error_reply(http_status(exc), str(exc))
            request_log.FAILED.failed("HTTP", f"{method} {path}", exc, reply.status)
        except _RouteError as exc:
            reply = _error_reply(exc.status, str(exc))
            request_log.FAILED.failed("HTTP", f"{method} {path}", exc, reply.status)
        except body_io.ClientDisconnected:
            raise
        except Exception as exc:  # the server keeps serving whatever a handler does
            reply = _error_reply(500, f"internal error: {type(exc).__name__}: {exc}")
            request_log.FAILED.failed("HTTP", f"{method} {path}", exc, 500)
        if started:
            request_log.request_done("HTTP", f"{method} {path}", reply.status, started, _detail(headers))
        return reply

    async def _route(self, method: str, path: str, headers: Headers, read_body: ReadBody) -> Reply:
        parts = path.strip("/").split("/")
        if not parts or parts[0] != "v2":
            console_reply = self._console.reply(method, path) if self._console is not None else None
            if console_reply is None:
                raise _NOT_FOUND
            return console_reply
        count = len(parts)
        engine = self._engine
        if count == 1:
            _expect(method, _GET)
            return handlers.server_metadata(engine)
        section = parts[1]
        if section == "models":
            if count == 3 and parts[2] == "stats":
                _expect(method, _GET)
                return handlers.model_statistics(engine, "", "")
            if count < 3:
                raise _NOT_FOUND
            model = parts[2]
            version = ""
            rest = parts[3:]
            if rest and rest[0] == "versions":
                if len(rest) < 2:
                    raise _NOT_FOUND
                version = rest[1]
                rest = rest[2:]
            if rest == ["trace", "setting"] and not version:
                body = (await self._read(headers, read_body))[0] if method == _POST else b""
                return handlers.trace_setting(engine, method, model, body)
            if len(rest) > 1:
                raise _NOT_FOUND
            action = rest[0] if rest else ""
            if action == "infer":
                _expect(method, _POST)
                body, header_length = await self._read(headers, read_body)
                forwarded = header_forward.from_http(headers) if header_forward.http_enabled() else None
                return await handlers.infer(
                    engine, self._decoder, model, version, body, header_length, forwarded
                )
            handler = _MODEL_GETS.get(action)
            if handler is None:
                raise _NOT_FOUND
            _expect(method, _GET)
            return handler(engine, model, version)
        if section == "pipelines" and count in (3, 5):
            _expect(method, _POST)
            version = parts[4] if count == 5 and parts[3] == "versions" else ""
            if count == 5 and parts[3] != "versions":
                raise _NOT_FOUND
            body, _ = await self._read(headers, read_body)
            return Reply(200, await pipeline_route.infer_raw_image(engine, parts[2], version, body))
        if section == "trace" and count == 3 and parts[2] == "setting":
            body = (await self._read(headers, read_body))[0] if method == _POST else b""
            return handlers.trace_setting(engine, method, "", body)
        if section == "health" and count == 3:
            _expect(method, _GET)
            if parts[2] == "live":
                return handlers.live(engine)
            if parts[2] == "ready":
                return handlers.ready(engine)
            raise _NOT_FOUND
        if section in ("systemsharedmemory", "cudasharedmemory"):
            return await self._shared_memory(section == "cudasharedmemory", method, parts, headers, read_body)
        if section == "repository":
            if count == 3 and parts[2] == "index":
                _expect(method, _POST)
                body, _ = await self._read(headers, read_body)
                return handlers.repository_index(engine, body)
            if count == 5 and parts[2] == "models" and parts[4] in ("load", "unload"):
                _expect(method, _POST)
                body, _ = await self._read(headers, read_body)
                if parts[4] == "load":
                    return await handlers.load_model(engine, parts[3], body)
                return await handlers.unload_model(engine, parts[3], body)
        raise _NOT_FOUND

    async def _shared_memory(
        self, cuda: bool, method: str, parts: list[str], headers: Headers, read_body: ReadBody
    ) -> Reply:
        """/v2/{system,cuda}sharedmemory/[region/NAME/]{status,register,unregister}."""
        rest = parts[2:]
        region = ""
        if len(rest) == 3 and rest[0] == "region":
            region, rest = rest[1], rest[2:]
        if len(rest) != 1:
            raise _NOT_FOUND
        action = rest[0]
        engine = self._engine
        if action == "status":
            _expect(method, _GET)
            # No CUDA region can ever be registered: its status is the empty list, as in Triton.
            return Reply(200, b"[]") if cuda else handlers.shm_status(engine, region)
        _expect(method, _POST)
        if action == "register" and region:
            body, _ = await self._read(headers, read_body)
            if cuda:
                return handlers.cuda_shm_register(engine, region, body)
            return handlers.shm_register(engine, region, body)
        if action == "unregister":
            return Reply(200) if cuda else handlers.shm_unregister(engine, region)
        raise _NOT_FOUND

    async def _read(self, headers: Headers, read_body: ReadBody) -> tuple[bytes, bytes | None]:
        """The decoded body and the Inference-Header-Content-Length header, if any."""
        content_length: bytes | None = None
        encoding: bytes | None = None
        header_length: bytes | None = None
        for name, value in headers:
            if name == b"content-length":
                content_length = value
            elif name == b"content-encoding":
                encoding = value
            elif name == b"inference-header-content-length":
                header_length = value
        limits = self._limits
        body_io.check_declared_length(content_length, limits)
        body = await read_body()
        if encoding is not None:
            coding = encoding.decode("latin-1").strip().lower()
            if coding and coding != "identity":
                body = body_io.inflate(body, coding, limits)
        return body, header_length


def _detail(headers: Headers) -> str:
    """What --log-verbose=2 adds to a request's line: its headers (sizes and content types)."""
    shown = (b"content-length", b"content-type", b"content-encoding", b"inference-header-content-length")
    return " ".join(f"{n.decode()}={v.decode('latin-1')}" for n, v in headers if n in shown)


def _expect(method: str, allowed: str) -> None:
    if method != allowed:
        raise _METHOD_NOT_ALLOWED


async def _send_reply(send: Send, reply: Reply) -> None:
    headers = [(b"content-type", reply.content_type), (b"content-length", str(len(reply.body)).encode())]
    if reply.header_length is not None:
        headers.append((b"inference-header-content-length", str(reply.header_length).encode()))
    headers.extend(reply.headers)
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    # The engine's lifetime belongs to the CLI, not to the HTTP server: acknowledge and return.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_http_app(
    engine: EngineApi, limits: HttpLimits | None = None, console: ConsoleAssets | None = None
) -> ASGIApp:
    """The KServe v2 / Triton HTTP protocol over `engine` as an ASGI 3 application (with the web
    console at /console when `console` is given)."""
    return HttpApp(engine, limits or HttpLimits(), console)
