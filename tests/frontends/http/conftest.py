"""Fixtures for the HTTP front end: the fake engine, requests through the production door
(`HttpProtocol` -> `HttpApp.handle`) without a socket, and a live server on a free port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from packserve.frontends.http import HttpLimits, HttpServer
from tests.fakes.engine import FakeEngine
from tests.fakes.http_client import HttpCaller


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def limits() -> HttpLimits:
    return HttpLimits()


@pytest.fixture
def call(engine: FakeEngine, limits: HttpLimits) -> HttpCaller:
    return HttpCaller(engine, limits)


class LiveServer:
    def __init__(self, engine: FakeEngine, limits: HttpLimits) -> None:
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
