"""The HTTP application: the one door every HTTP request enters (`HttpApp.handle`, called by
packserve.frontends.http.protocol with the whole body already read under max_body_bytes).

It checks --http-restricted-api, finds the route (`routes.ROUTES`), turns every error into a reply
with the one error table, and logs failed requests. No framework: this is the hot path of every
HTTP request. Runs on the event loop; one call per HTTP request.
"""

from __future__ import annotations

import time

from packserve.core.engine_api import EngineApi
from packserve.errors import PackserveError
from packserve.frontends import request_log
from packserve.frontends.http import handlers
from packserve.frontends.http.console import ConsoleAssets
from packserve.frontends.http.infer_decode import InferDecoder
from packserve.frontends.http.limits import HttpLimits
from packserve.frontends.http.reply import Reply, error_reply
from packserve.frontends.http.routes import NOT_FOUND, ROUTES, Call, Headers, RouteContext, RouteError
from packserve.frontends.restrictions import Restrictions
from packserve.frontends.status import http_status

_HEALTH = {"/v2/health/live": handlers.live, "/v2/health/ready": handlers.ready}


class HttpApp:
    """The KServe v2 / Triton HTTP protocol over `engine` (with the web console at /console when
    `console` is given)."""

    def __init__(
        self,
        engine: EngineApi,
        limits: HttpLimits,
        console: ConsoleAssets | None = None,
        restrictions: Restrictions | None = None,
    ) -> None:
        self._context = RouteContext(engine, limits, InferDecoder(limits))
        self._console = console
        self._restrictions = restrictions or Restrictions()

    def health_now(self, method: str, path: str, headers: Headers) -> Reply | None:
        """The answer to a liveness / readiness probe, computed at once (no task, no await), so
        the transport can send it ahead of inference work; None for any other request."""
        if method != "GET" or path not in _HEALTH:
            return None
        return self._refused(method, path, headers) or _HEALTH[path](self._context.engine)

    def _refused(self, method: str, path: str, headers: Headers) -> Reply | None:
        """--http-restricted-api: the 403 for a restricted path without its header (logged), else None."""
        if not self._restrictions:
            return None
        refusal = self._restrictions.http_refusal(path, headers)
        if refusal is None:
            return None
        request_log.FAILED.failed("HTTP", f"{method} {path}", PermissionError(refusal), 403)
        return error_reply(403, refusal)

    async def handle(self, method: str, path: str, headers: Headers, body: bytes) -> Reply:
        """Answer one request. `body` is the raw body, already checked against max_body_bytes
        while it arrived. Every error becomes a reply; nothing escapes."""
        refused = self._refused(method, path, headers)  # checked before anything else runs
        if refused is not None:
            return refused
        started = time.perf_counter() if request_log.verbosity() else 0.0
        try:
            reply = await self._route(method, path, headers, body)
        except PackserveError as exc:
            reply = error_reply(http_status(exc), str(exc))
            request_log.FAILED.failed("HTTP", f"{method} {path}", exc, reply.status)
        except RouteError as exc:
            reply = error_reply(exc.status, str(exc))
            request_log.FAILED.failed("HTTP", f"{method} {path}", exc, reply.status)
        except Exception as exc:  # the server keeps serving whatever a handler does
            reply = error_reply(500, f"internal error: {type(exc).__name__}: {exc}")
            request_log.FAILED.failed("HTTP", f"{method} {path}", exc, 500)
        if started:
            request_log.request_done("HTTP", f"{method} {path}", reply.status, started, _detail(headers))
        return reply

    async def _route(self, method: str, path: str, headers: Headers, body: bytes) -> Reply:
        parts = path.strip("/").split("/")
        if parts[0] != "v2":
            console_reply = self._console.reply(method, path) if self._console is not None else None
            if console_reply is None:
                raise NOT_FOUND
            return console_reply
        handler, params = ROUTES.find(method, parts)
        reply = handler(self._context, Call(method, params, headers, body))
        if isinstance(reply, Reply):
            return reply
        return await reply


def _detail(headers: Headers) -> str:
    """What --log-verbose=2 adds to a request's line: its headers (sizes and content types)."""
    shown = (b"content-length", b"content-type", b"content-encoding", b"inference-header-content-length")
    return " ".join(f"{n.decode()}={v.decode('latin-1')}" for n, v in headers if n in shown)
