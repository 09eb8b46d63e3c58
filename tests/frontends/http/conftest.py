"""Fixtures for the HTTP front end: a fake engine, the ASGI app called directly, a live server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from packserve.frontends.http import HttpLimits, HttpServer, create_http_app
from tests.fakes.engine import FakeEngine


class AsgiResult:
    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return orjson.loads(self.body)


class AsgiCaller:
    """Calls the ASGI app in-process, the way an ASGI server would, without sockets."""

    def __init__(self, engine: Any, limits: HttpLimits) -> None:
        self.app = create_http_app(engine, limits)

    async def __call__(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        chunk_size: int = 0,
    ) -> AsgiResult:
        raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        chunks = [body[i : i + chunk_size] for i in range(0, len(body), chunk_size)] if chunk_size else [body]
        messages = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "headers": raw_headers}
        await self.app(scope, receive, send)
        assert sent[0]["type"] == "http.response.start"
        response_headers = dict(sent[0]["headers"])
        body_out = b"".join(m.get("body", b"") for m in sent[1:])
        assert int(response_headers[b"content-length"]) == len(body_out)
        return AsgiResult(sent[0]["status"], response_headers, body_out)


@pytest.fixture
def engine() -> Any:
    return FakeEngine()


@pytest.fixture
def limits() -> HttpLimits:
    return HttpLimits()


@pytest.fixture
def asgi_caller() -> type[AsgiCaller]:
    """The caller class, for tests that need their own limits."""
    return AsgiCaller


@pytest.fixture
def call(engine: Any, limits: HttpLimits) -> AsgiCaller:
    return AsgiCaller(engine, limits)


class LiveServer:
    def __init__(self, engine: Any, limits: HttpLimits) -> None:
        self.engine = engine
        self._loop = asyncio.new_event_loop()
        self._server = HttpServer(engine, "127.0.0.1", 0, limits)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._server.start(), self._loop).result(timeout=10)
        self.url = f"127.0.0.1:{self._server.port}"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def live_server() -> Iterator[LiveServer]:
    """A real packserve HTTP server on a free port, on its own loop in a thread (sync clients block)."""
    with LiveServer(FakeEngine(), HttpLimits(max_body_bytes=1024 * 1024)) as server:
        yield server
