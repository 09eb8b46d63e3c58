"""`packserve serve`: Triton's flag names and defaults, one options object, one call."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from packserve.cli import hygiene
from packserve.cli.serve_shutdown import (
    LOCAL_HOST,
    Addresses,
    ShutdownTiming,
    StopSignals,
    drain_and_stop,
)
from packserve.core.engine import Engine, EngineOptions
from packserve.core.response_cache import parse_cache_config
from packserve.core.views import IndexEntry
from packserve.frontends.grpc import GrpcOptions, GrpcServer
from packserve.frontends.http import (
    ConnectionLimits,
    ConsoleAssets,
    HttpLimits,
    HttpServer,
    raise_open_file_limit,
)
from packserve.frontends.restrictions import Restrictions
from packserve.metrics import MetricsServer, PrometheusObserver

log = logging.getLogger("packserve")
_CONN = ConnectionLimits()  # defaults of the connection flags


@dataclass(frozen=True)
class ServeOptions:
    engine: EngineOptions
    addresses: Addresses = field(default_factory=Addresses)
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    grpc: GrpcOptions = field(default_factory=GrpcOptions)
    shutdown: ShutdownTiming = field(default_factory=ShutdownTiming)
    console: bool = True  # the web console at /console on the HTTP port
    connection_limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    http_restrictions: Restrictions = field(default_factory=Restrictions)


def print_model_table(index: list[IndexEntry], console: Console) -> None:
    table = Table(title="Models")
    for column in ("Model", "Version", "Status"):
        table.add_column(column)
    for entry in index:
        status = entry.state if not entry.reason else f"{entry.state}: {entry.reason}"
        style = "green" if entry.state == "READY" else "red"
        table.add_row(entry.name, entry.version or "-", f"[{style}]{status}[/{style}]")
    console.print(table)


async def run_server(options: ServeOptions, console: Console | None = None) -> None:
    """Start the engine and the three front ends; return after SIGTERM/SIGINT has drained them."""
    # soft_wrap: log lines stay whole (greppable) when stderr is a file, not a terminal.
    console = console or Console(stderr=True, soft_wrap=True)
    open_files = raise_open_file_limit()  # before anything opens sockets or models
    log.debug("open-file limit %d", open_files)
    at, timing = options.addresses, options.shutdown
    metrics = MetricsServer(at.metrics_host, options.metrics_port)
    engine = await Engine.start(options.engine, observers=[PrometheusObserver(metrics.registry)])
    console_assets = ConsoleAssets(options.engine.model_control_mode) if options.console else None
    http = HttpServer(
        engine,
        at.http_host,
        options.http_port,
        options.http_limits,
        timing.exit_timeout_s,
        console_assets,
        options.connection_limits,
        options.http_restrictions,
    )
    grpc_server = GrpcServer(engine, at.grpc_host, options.grpc_port, options.grpc)
    print_model_table(engine.repository_index(), console)
    signals = StopSignals(asyncio.get_running_loop())
    listeners = (
        ("metrics", at.metrics_host, options.metrics_port, metrics.start),
        ("gRPC", at.grpc_host, options.grpc_port, grpc_server.start),
        ("HTTP", at.http_host, options.http_port, http.start),
    )
    try:
        for what, host, port, start in listeners:
            try:
                await start()
            except OSError as exc:
                raise OSError(f"{what} port {host}:{port}: {exc.strerror or exc}") from exc
    except OSError as exc:
        # A taken port is an operator's mistake: say which, unload, exit non-zero without a traceback.
        console.print(f"[red]packserve: cannot listen on the {exc}[/red]")
        await asyncio.gather(http.stop(0), grpc_server.stop(0), metrics.stop())
        await engine.shutdown(0)
        raise SystemExit(1) from None
    console.print(
        f"packserve: HTTP on {at.http_host}:{http.port}, gRPC on {at.grpc_host}:{grpc_server.port}, "
        f"metrics on {at.metrics_host}:{metrics.port}"
    )
    if console_assets is not None:
        console.print(f"packserve: web console at http://{at.http_host}:{http.port}/console/")
    await signals.first.wait()
    await drain_and_stop(engine, http, grpc_server, metrics, timing, signals, console)
    console.print("packserve: stopped")


def serve_command(
    model_repository: Annotated[
        Path, typer.Option("--model-repository", help="Triton-format model repository")
    ],
    http_port: Annotated[int, typer.Option("--http-port")] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port")] = 8001,
    metrics_port: Annotated[int, typer.Option("--metrics-port")] = 8002,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="address of all three listeners; 127.0.0.1 (this machine only) by default, "
            "0.0.0.0 to be reachable from elsewhere, as in containers (Triton's default)",
        ),
    ] = LOCAL_HOST,
    http_address: Annotated[str | None, typer.Option("--http-address", help="HTTP only [--host]")] = None,
    grpc_address: Annotated[str | None, typer.Option("--grpc-address", help="gRPC only [--host]")] = None,
    metrics_address: Annotated[
        str | None, typer.Option("--metrics-address", help="metrics only [--host]")
    ] = None,
    model_control_mode: Annotated[
        str, typer.Option("--model-control-mode", help="none | explicit | poll")
    ] = "none",
    load_model: Annotated[
        list[str] | None,
        typer.Option("--load-model", help="explicit mode: model to load at startup ('*' = all)"),
    ] = None,
    repository_poll_secs: Annotated[float, typer.Option("--repository-poll-secs")] = 15.0,
    max_body_mib: Annotated[int, typer.Option("--max-body-mib", help="largest HTTP request body")] = 64,
    grpc_max_message_mib: Annotated[int, typer.Option("--grpc-max-message-mib")] = 256,
    exit_timeout: Annotated[
        float,
        typer.Option(
            "--exit-timeout-secs",
            "--drain-timeout",
            min=0,
            help="on SIGTERM, once the listeners close: seconds requests in flight get to finish",
        ),
    ] = 30.0,
    drain_delay: Annotated[
        float,
        typer.Option(
            "--drain-delay-secs",
            min=0,
            help="on SIGTERM: seconds to answer not-ready yet keep serving before closing listeners "
            "(lets a load balancer stop routing here first)",
        ),
    ] = 0.0,
    inline_execution_us: Annotated[
        int,
        typer.Option(
            "--inline-execution-us",
            min=0,
            help="CPU models whose batches cost less run them on the event loop (0 = never)",
        ),
    ] = EngineOptions.inline_execution_us,
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory",
            help="shed new requests (503) while resident memory, isolated model workers included, "
            "is above this (e.g. 6GiB); default: no limit",
        ),
    ] = None,
    log_verbose: Annotated[bool, typer.Option("--log-verbose")] = False,
    cache_config: Annotated[
        str | None, typer.Option("--cache-config", help="response cache: local,size=BYTES (Triton's)")
    ] = None,
    console: Annotated[
        bool, typer.Option("--console/--no-console", help="web console at /console on the HTTP port")
    ] = True,
    # Connection hygiene and the closed control plane (packserve/cli/hygiene.py).
    http_restricted_api: hygiene.HttpRestrictedApi = None,
    grpc_restricted_protocol: hygiene.GrpcRestrictedProtocol = None,
    http_max_connections: hygiene.MaxConnections = 0,
    http_header_timeout: hygiene.HeaderTimeout = _CONN.header_timeout_s,
    http_body_timeout: hygiene.BodyTimeout = _CONN.body_timeout_s,
    http_keep_alive_timeout: hygiene.KeepAliveTimeout = _CONN.keep_alive_timeout_s,
) -> None:
    """Serve a model repository over KServe v2 HTTP and gRPC, with Prometheus metrics."""
    logging.basicConfig(
        level=logging.DEBUG if log_verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if model_control_mode not in ("none", "explicit", "poll"):
        raise typer.BadParameter("must be none, explicit or poll", param_hint="--model-control-mode")
    if not model_repository.is_dir():
        raise typer.BadParameter(f"'{model_repository}' is not a directory", param_hint="--model-repository")
    try:
        cache_bytes = parse_cache_config(cache_config) if cache_config else 0
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--cache-config") from None
    options = ServeOptions(
        engine=EngineOptions(
            model_repository=model_repository.resolve(),
            model_control_mode=model_control_mode,
            load_models=tuple(load_model or ()),
            poll_interval_s=repository_poll_secs,
            drain_timeout_s=exit_timeout,
            inline_execution_us=inline_execution_us,
            response_cache_bytes=cache_bytes,
            max_memory_bytes=_memory_option(max_memory),
        ),
        addresses=Addresses(host, http_address, grpc_address, metrics_address),
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        http_limits=HttpLimits(max_body_bytes=max_body_mib << 20),
        grpc=GrpcOptions(
            max_receive_message_bytes=grpc_max_message_mib << 20,
            max_send_message_bytes=grpc_max_message_mib << 20,
            max_connection_idle_ms=int(http_keep_alive_timeout * 1000),
            restrictions=hygiene.restrictions(grpc_restricted_protocol, "--grpc-restricted-protocol"),
        ),
        shutdown=ShutdownTiming(drain_delay_s=drain_delay, exit_timeout_s=exit_timeout),
        console=console,
        connection_limits=hygiene.connection_limits(
            http_max_connections, http_header_timeout, http_body_timeout, http_keep_alive_timeout
        ),
        http_restrictions=hygiene.restrictions(http_restricted_api, "--http-restricted-api"),
    )
    _run(run_server(options))


def _memory_option(text: str | None) -> int:
    from packserve.errors import InvalidArgumentError
    from packserve.planning.units import parse_memory_bytes

    if text is None:
        return 0
    try:
        return parse_memory_bytes(text)
    except InvalidArgumentError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-memory") from None


def _run(main: object) -> None:
    try:
        import uvloop

        uvloop.run(main)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is missing on Windows
        asyncio.run(main)  # type: ignore[arg-type]
