"""The native gRPC transport: HTTP/2 over cleartext with prior knowledge (h2c, what tritonclient.grpc
and perf_analyzer speak by default; no TLS), one asyncio Protocol per connection on the event loop
the server already runs, serving the same servicers as grpc.aio.

Why by hand: measured on 2 cores with perf_analyzer at concurrency 8 on `simple`, the server
answered 5,356 infer/s over HTTP and 1,680-1,710 over grpc.aio (54% of its loop thread in grpc.aio's
per-call Cython machinery), and 1,230-1,430 with the same servicer on grpclib. The `h2` library
alone costs ~186 us of server CPU per call (HEADERS+DATA in, HEADERS+DATA+trailers out), as much as
packserve's whole HTTP/1.1 path per request, so no h2-based stack could match HTTP. Here a call
costs a frame loop, an HPACK decode (the `hpack` package; skipped for a block seen before, see
native_headers.py), one task and one write. bench/README.md has the figures.

Frames and the gRPC message framing live in h2_frames.py, native_connection.py (streams and
requests), native_answers.py (answers) and native_control.py (the connection); calls and the
context the servicers see in native_call.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from packserve.core.engine_api import EngineApi
from packserve.frontends.grpc.health import EngineHealthServicer
from packserve.frontends.grpc.native_connection import GrpcConnection
from packserve.frontends.grpc.native_methods import MethodSpec, method_table
from packserve.frontends.grpc.native_settings import CANCELLED, NativeSettings
from packserve.frontends.grpc.servicer import InferenceServicer

logger = logging.getLogger(__name__)


class ConnectionHub:
    """What every connection of one server shares: settings, methods, the set of connections."""

    def __init__(self, settings: NativeSettings, methods: dict[str, MethodSpec]) -> None:
        self.settings = settings
        self.methods = methods
        self.connections: set[GrpcConnection] = set()
        self.all_closed = asyncio.Event()
        self.all_closed.set()

    def connection_opened(self, connection: GrpcConnection) -> None:
        self.connections.add(connection)
        self.all_closed.clear()

    def connection_closed(self, connection: GrpcConnection) -> None:
        self.connections.discard(connection)
        if not self.connections:
            self.all_closed.set()


class NativeGrpcServer:
    """`await start()` binds and serves; `await stop(grace_s)` answers health NOT_SERVING, sends
    GOAWAY, lets calls in flight finish for up to `grace_s`, then cancels the rest and closes."""

    def __init__(
        self, engine: EngineApi, host: str, port: int, settings: NativeSettings, reuse_port: bool
    ) -> None:
        self._engine = engine
        self._host = host
        self._requested_port = port
        self._settings = settings
        self._reuse_port = reuse_port
        self._server: asyncio.AbstractServer | None = None
        self._hub: ConnectionHub | None = None
        self._health: EngineHealthServicer | None = None
        self.port = port

    async def start(self) -> None:
        if self._server is not None:
            return
        health = EngineHealthServicer(self._engine)
        hub = ConnectionHub(self._settings, method_table(InferenceServicer(self._engine), health))
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: GrpcConnection(hub),
                self._host or None,
                self._requested_port,
                reuse_port=self._reuse_port or None,
                backlog=1024,
            )
        except OSError as error:
            raise OSError(f"gRPC server cannot bind {self._host}:{self._requested_port}: {error}") from error
        sockets = server.sockets or ()
        self.port = sockets[0].getsockname()[1] if sockets else self._requested_port
        self._server, self._hub, self._health = server, hub, health

    async def stop(self, grace_s: float) -> None:
        server, hub, health = self._server, self._hub, self._health
        self._server = None
        if server is None or hub is None:
            return
        if health is not None:
            health.enter_shutdown()
        server.close()  # no new connections
        for connection in list(hub.connections):
            connection.shutdown()
        if hub.connections and grace_s > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(hub.all_closed.wait(), grace_s)
        for connection in list(hub.connections):
            for call in list(connection.calls.values()):
                connection.finish(call, CANCELLED, "the server stopped before the call finished")
                if call.task is not None:
                    call.task.cancel()
            connection.close()
        await asyncio.sleep(0)  # let the cancelled calls unwind
