"""Running the HTTP app with uvicorn (httptools parser) on the caller's event loop, so the CLI can
run it next to the gRPC server in one loop (uvloop when the CLI installs it)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Generator

import uvicorn

from packserve.core.engine_api import EngineApi
from packserve.frontends.http.app import create_http_app
from packserve.frontends.http.limits import HttpLimits


class _QuietServer(uvicorn.Server):
    # Signals belong to the CLI, which drains the engine and every front end in order.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    """The KServe v2 HTTP front end as a start/stop object on the running event loop."""

    def __init__(
        self,
        engine: EngineApi,
        host: str = "0.0.0.0",
        port: int = 8000,
        limits: HttpLimits | None = None,
        drain_timeout_s: float = 30.0,
    ) -> None:
        config = uvicorn.Config(
            create_http_app(engine, limits or HttpLimits()),
            host=host,
            port=port,
            http="httptools",
            loop="none",  # use the loop we are called on
            lifespan="off",
            access_log=False,  # no per-request logging on the hot path
            log_level="warning",
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=max(1, math.ceil(drain_timeout_s)),
            timeout_keep_alive=30,
        )
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self._server.config.port)

    async def start(self) -> None:
        """Bind and start accepting; returns once the socket listens. Raises if it cannot bind."""
        if self._task is not None:
            raise RuntimeError("HttpServer already started")
        self._task = asyncio.get_running_loop().create_task(self._serve())
        while not self._server.started:
            if self._task.done():
                task, self._task = self._task, None
                task.result()  # raises the bind error
                raise OSError(f"HTTP server on port {self._server.config.port} stopped while starting")
            await asyncio.sleep(0.01)

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit as exc:
            # uvicorn calls sys.exit() when it cannot bind; inside a shared loop that must be an error.
            raise OSError(
                f"HTTP server failed to start on {self._server.config.host}:{self._server.config.port}"
            ) from exc

    async def stop(self, drain_timeout_s: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (up to the drain timeout given here or at
        construction), then close the remaining connections."""
        if self._task is None:
            return
        if drain_timeout_s is not None:
            self._server.config.timeout_graceful_shutdown = max(1, math.ceil(drain_timeout_s))
        self._server.should_exit = True
        try:
            await self._task
        finally:
            self._task = None

    async def wait(self) -> None:
        """Until the server stops."""
        if self._task is not None:
            await asyncio.shield(self._task)


async def serve_http(
    engine: EngineApi,
    host: str,
    port: int,
    limits: HttpLimits | None = None,
    ready_event: asyncio.Event | None = None,
) -> None:
    """Serve until cancelled; sets `ready_event` once listening, drains in-flight requests on exit."""
    server = HttpServer(engine, host, port, limits)
    await server.start()
    if ready_event is not None:
        ready_event.set()
    try:
        await server.wait()
    finally:
        await server.stop()
