"""GrpcServer: the KServe v2 gRPC front end plus the standard health service, on grpc.aio.

It runs in the caller's event loop (the CLI runs it beside the HTTP server) and owns nothing but
the grpc server: requests go straight to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2_grpc
from tritonclient.grpc import service_pb2_grpc

from packserve.core.engine_api import EngineApi
from packserve.frontends.grpc.health import EngineHealthServicer
from packserve.frontends.grpc.restriction import RestrictionInterceptor
from packserve.frontends.grpc.servicer import InferenceServicer
from packserve.frontends.restrictions import Restrictions

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GrpcOptions:
    # Images easily exceed gRPC's 4 MiB default; a batch of them far more.
    max_receive_message_bytes: int = 256 * _MIB
    max_send_message_bytes: int = 256 * _MIB
    # Off by default: two servers silently sharing a port is a deployment bug, not a feature.
    reuse_port: bool = False
    # Keepalive pings let load balancers notice dead connections; 0 leaves gRPC's default.
    keepalive_time_ms: int = 0
    # Connection hygiene (as the HTTP side): idle connections closed, header block bounded.
    max_connection_idle_ms: int = 75_000
    max_metadata_bytes: int = 32 * 1024
    restrictions: Restrictions = field(default_factory=Restrictions)

    def channel_options(self) -> list[tuple[str, int]]:
        options = [
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            ("grpc.max_send_message_length", self.max_send_message_bytes),
            ("grpc.so_reuseport", int(self.reuse_port)),
            ("grpc.max_metadata_size", self.max_metadata_bytes),
        ]
        if self.max_connection_idle_ms > 0:
            options.append(("grpc.max_connection_idle_ms", self.max_connection_idle_ms))
        if self.keepalive_time_ms > 0:
            options.append(("grpc.keepalive_time_ms", self.keepalive_time_ms))
        return options


def _address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"  # a bare IPv6 literal
    return f"{host}:{port}"


class GrpcServer:
    """`await start()` binds and serves; `await stop(grace_s)` drains in-flight calls, then closes."""

    def __init__(self, engine: EngineApi, host: str, port: int, options: GrpcOptions | None = None) -> None:
        self._engine = engine
        self._host = host
        self._requested_port = port
        self._options = options or GrpcOptions()
        self._server: grpc.aio.Server | None = None
        self._health: EngineHealthServicer | None = None
        self._bound_port = 0

    @property
    def port(self) -> int:
        """The bound port once started (the one asked for, or the free one picked for 0)."""
        return self._bound_port or self._requested_port

    async def start(self) -> None:
        if self._server is not None:
            return
        restrictions = self._options.restrictions
        server = grpc.aio.server(
            options=self._options.channel_options(),
            interceptors=[RestrictionInterceptor(restrictions)] if restrictions else None,
        )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self._engine), server)
        health = EngineHealthServicer(self._engine)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        address = _address(self._host, self._requested_port)
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as error:  # newer grpcio raises instead of returning 0
            raise OSError(f"gRPC server cannot bind {address}: {error}") from error
        if bound == 0:
            raise OSError(f"gRPC server cannot bind {address}")
        await server.start()
        self._server, self._health, self._bound_port = server, health, bound

    async def stop(self, grace_s: float = 5.0) -> None:
        server, health = self._server, self._health
        self._server = self._health = None
        if server is None:
            return
        if health is not None:
            health.enter_shutdown()
        await server.stop(grace_s)
