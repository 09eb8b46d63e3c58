"""The HTTP server: `HttpProtocol` connections on the caller's event loop, so the CLI runs it next
to the gRPC server in one loop (uvloop when the CLI installs it). Signals belong to the CLI."""

from __future__ import annotations

import asyncio
import contextlib

from packserve.core.engine_api import DEFAULT_DRAIN_TIMEOUT_S, EngineApi
from packserve.frontends.http.app import HttpApp
from packserve.frontends.http.connections import ConnectionLimits, ConnectionTracker
from packserve.frontends.http.console import ConsoleAssets
from packserve.frontends.http.limits import HttpLimits
from packserve.frontends.http.protocol import HttpProtocol
from packserve.frontends.restrictions import Restrictions


class HttpServer:
    """The KServe v2 HTTP front end as a start/stop object on the running event loop."""

    def __init__(
        self,
        engine: EngineApi,
        host: str = "0.0.0.0",
        port: int = 8000,
        limits: HttpLimits | None = None,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
        console: ConsoleAssets | None = None,
        connection_limits: ConnectionLimits | None = None,
        restrictions: Restrictions | None = None,
    ) -> None:
        self._limits = limits or HttpLimits()
        self._conn = connection_limits or ConnectionLimits()
        self._app = HttpApp(engine, self._limits, console, restrictions)
        self._host = host
        self._requested_port = port
        self._drain_timeout_s = drain_timeout_s
        self._tracker = ConnectionTracker(self._conn.connection_cap())
        self._server: asyncio.AbstractServer | None = None
        self._stopped = asyncio.Event()

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        if self._server is not None:
            # asyncio's and uvloop's servers both list their sockets; AbstractServer does not say so.
            for sock in getattr(self._server, "sockets", ()):
                return int(sock.getsockname()[1])
        return self._requested_port

    async def start(self) -> None:
        """Bind and start accepting; returns once the socket listens. OSError if it cannot bind."""
        if self._server is not None:
            raise RuntimeError("HttpServer already started")
        loop = asyncio.get_running_loop()
        self._stopped.clear()
        self._server = await loop.create_server(
            lambda: HttpProtocol(self._app, self._limits, self._tracker, self._conn),
            self._host,
            self._requested_port,
            reuse_address=True,
            backlog=1024,
        )

    async def stop(self, drain_timeout_s: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (up to the drain timeout given here or at
        construction), then close the remaining connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        timeout = self._drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        for connection in list(self._tracker.connections):
            connection.close_when_idle()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._tracker.idle.wait(), timeout=timeout)
        for connection in list(self._tracker.connections):
            connection.close_when_idle()
        self._stopped.set()

    async def wait(self) -> None:
        """Until the server stops."""
        if self._server is not None:
            await self._stopped.wait()


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
