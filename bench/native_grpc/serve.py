"""`packserve serve` with the native gRPC transport on the gRPC port (bench/native_grpc), for
bench/grpc_vs_http.py: `python -m bench.native_grpc.serve serve --model-repository R ...`."""

from __future__ import annotations

from bench.native_grpc.native_server import NativeGrpcServer
from bench.native_grpc.native_settings import NativeSettings
from packserve.core.engine_api import EngineApi
from packserve.frontends.grpc import GrpcOptions


class NativeFrontEnd:
    """GrpcServer's shape (start, stop, port) over the native transport."""

    def __init__(self, engine: EngineApi, host: str, port: int, options: GrpcOptions | None = None) -> None:
        options = options or GrpcOptions()
        settings = NativeSettings(
            max_receive_message_bytes=options.max_receive_message_bytes,
            max_send_message_bytes=options.max_send_message_bytes,
            max_metadata_bytes=options.max_metadata_bytes,
            max_connection_idle_s=options.max_connection_idle_ms / 1000,
            keepalive_s=options.keepalive_time_ms / 1000,
            restrictions=options.restrictions,
        )
        self._server = NativeGrpcServer(engine, host, port, settings, options.reuse_port)

    @property
    def port(self) -> int:
        return self._server.port

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace_s: float = 5.0) -> None:
        await self._server.stop(grace_s)


def main() -> None:
    import packserve.cli.serve as serve_module
    from packserve.cli import main as packserve_main

    serve_module.GrpcServer = NativeFrontEnd  # type: ignore[misc,assignment]
    packserve_main()


if __name__ == "__main__":
    main()
