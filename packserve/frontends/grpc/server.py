"""GrpcServer: the KServe v2 gRPC front end plus the standard health service.

Two transports serve the same servicers: the native one (native_server.py, HTTP/2 written for
packserve, the default: 1.7-2.9x grpc.aio's throughput on small requests, ahead of HTTP at
concurrency 8 and 32 with perf_analyzer) and grpc.aio
(`--grpc-implementation grpcio`). Either runs in the caller's event loop (the CLI runs it beside
the HTTP server) and owns nothing but its listener: requests go straight to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2_grpc
from tritonclient.grpc import service_pb2_grpc

from packserve.core.engine_api import EngineApi
from packserve.frontends.grpc.health import EngineHealthServicer
from packserve.frontends.grpc.native_server import NativeGrpcServer
from packserve.frontends.grpc.native_settings import NativeSettings, PingPolicy
from packserve.frontends.grpc.restriction import RestrictionInterceptor
from packserve.frontends.grpc.servicer import InferenceServicer
from packserve.frontends.restrictions import Restrictions

_MIB = 1024 * 1024
IMPLEMENTATIONS = ("native", "grpcio")


@dataclass(frozen=True, slots=True)
class GrpcOptions:
    # Images easily exceed gRPC's 4 MiB default; a batch of them far more.
    max_receive_message_bytes: int = 256 * _MIB
    max_send_message_bytes: int = 256 * _MIB
    # Off by default: two servers silently sharing a port is a deployment bug, not a feature.
    reuse_port: bool = False
    # Keepalive, ping policing and connection age (tritonserver's --grpc-keepalive-* flags).
    pings: PingPolicy = field(default_factory=PingPolicy)
    # Connection hygiene (as the HTTP side): idle connections closed, header block bounded.
    max_connection_idle_ms: int = 75_000
    max_metadata_bytes: int = 32 * 1024
    restrictions: Restrictions = field(default_factory=Restrictions)
    implementation: str = "native"  # or "grpcio" (grpc.aio)

    def __post_init__(self) -> None:
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"gRPC implementation '{self.implementation}': expected native or grpcio")

    def native_settings(self) -> NativeSettings:
        return NativeSettings(
            max_receive_message_bytes=self.max_receive_message_bytes,
            max_send_message_bytes=self.max_send_message_bytes,
            max_metadata_bytes=self.max_metadata_bytes,
            max_connection_idle_s=self.max_connection_idle_ms / 1000,
            pings=self.pings,
            restrictions=self.restrictions,
        )

    def channel_options(self) -> list[tuple[str, int]]:
        options = [
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            ("grpc.max_send_message_length", self.max_send_message_bytes),
            ("grpc.so_reuseport", int(self.reuse_port)),
            ("grpc.max_metadata_size", self.max_metadata_bytes),
        ]
        if self.max_connection_idle_ms > 0:
            options.append(("grpc.max_connection_idle_ms", self.max_connection_idle_ms))
        pings = self.pings
        for name, seconds in (
            ("grpc.keepalive_time_ms", pings.keepalive_s),
            ("grpc.max_connection_age_ms", pings.max_connection_age_s),
            ("grpc.max_connection_age_grace_ms", pings.max_connection_age_grace_s),
        ):
            if seconds > 0:  # grpc's own default (off / unlimited) otherwise
                options.append((name, _ms(seconds)))
        options += [
            ("grpc.keepalive_timeout_ms", _ms(pings.keepalive_timeout_s)),
            ("grpc.keepalive_permit_without_calls", int(pings.keepalive_without_calls)),
            ("grpc.http2.max_pings_without_data", pings.max_pings_without_data),
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(pings.min_ping_interval_without_data_s)),
            ("grpc.http2.max_ping_strikes", pings.max_ping_strikes),
        ]
        return options


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


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
        self._native: NativeGrpcServer | None = None
        self._health: EngineHealthServicer | None = None
        self._bound_port = 0

    @property
    def port(self) -> int:
        """The bound port once started (the one asked for, or the free one picked for 0)."""
        if self._native is not None:
            return self._native.port
        return self._bound_port or self._requested_port

    @property
    def implementation(self) -> str:
        return self._options.implementation

    async def start(self) -> None:
        if self._server is not None or self._native is not None:
            return
        if self._options.implementation == "native":
            native = NativeGrpcServer(
                self._engine,
                self._host,
                self._requested_port,
                self._options.native_settings(),
                self._options.reuse_port,
            )
            await native.start()
            self._native, self._bound_port = native, native.port
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
        if self._native is not None:
            native, self._native = self._native, None
            await native.stop(grace_s)
            return
        server, health = self._server, self._health
        self._server = self._health = None
        if server is None:
            return
        if health is not None:
            health.enter_shutdown()
        await server.stop(grace_s)
