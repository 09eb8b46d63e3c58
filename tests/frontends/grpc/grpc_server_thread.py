"""A GrpcServer running on its own event-loop thread, so that the official synchronous
`tritonclient.grpc` client can call it from the test thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from packserve.core.engine_api import EngineApi
from packserve.frontends.grpc import GrpcOptions, GrpcServer

T = TypeVar("T")


class ServerThread:
    """A private event loop in a daemon thread; `start(engine)` serves that engine over gRPC."""

    def __init__(self, options: GrpcOptions | None = None, port: int = 0) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="grpc-test-loop", daemon=True)
        self._thread.start()
        self._options = options
        self._port = port
        self.server: GrpcServer | None = None

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=60)

    def start(self, engine: EngineApi) -> None:
        self.server = GrpcServer(engine, "127.0.0.1", self._port, self._options)
        self.call(self.server.start())

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.stop(0.5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"
