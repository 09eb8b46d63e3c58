"""`packserve serve`: Triton's flag names and defaults, one options object, one call."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from packserve.core.engine import Engine, EngineOptions
from packserve.core.views import IndexEntry
from packserve.frontends.grpc import GrpcOptions, GrpcServer
from packserve.frontends.http import ConsoleAssets, HttpLimits, HttpServer
from packserve.metrics import MetricsServer, PrometheusObserver

log = logging.getLogger("packserve")


@dataclass(frozen=True)
class ServeOptions:
    engine: EngineOptions
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    grpc: GrpcOptions = field(default_factory=GrpcOptions)
    drain_timeout_s: float = 30.0
    console: bool = True  # the web console at /console on the HTTP port


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
    metrics = MetricsServer(options.host, options.metrics_port)
    engine = await Engine.start(options.engine, observers=[PrometheusObserver(metrics.registry)])
    console_assets = ConsoleAssets(options.engine.model_control_mode) if options.console else None
    http = HttpServer(
        engine, options.host, options.http_port, options.http_limits, options.drain_timeout_s, console_assets
    )
    grpc_server = GrpcServer(engine, options.host, options.grpc_port, options.grpc)
    print_model_table(engine.repository_index(), console)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listeners = (
        ("metrics", options.metrics_port, metrics.start),
        ("gRPC", options.grpc_port, grpc_server.start),
        ("HTTP", options.http_port, http.start),
    )
    try:
        for what, port, start in listeners:
            try:
                await start()
            except OSError as exc:
                raise OSError(f"{what} port {options.host}:{port}: {exc.strerror or exc}") from exc
    except OSError as exc:
        # A taken port is an operator's mistake: say which, unload, exit non-zero without a traceback.
        console.print(f"[red]packserve: cannot listen on the {exc}[/red]")
        await asyncio.gather(http.stop(0), grpc_server.stop(0), metrics.stop())
        await engine.shutdown(0)
        raise SystemExit(1) from None
    console.print(
        f"packserve: HTTP on {options.host}:{http.port}, gRPC on {options.host}:{grpc_server.port}, "
        f"metrics on {options.host}:{metrics.port}"
    )
    if console_assets is not None:
        console.print(f"packserve: web console at http://{options.host}:{http.port}/console/")
    await stop.wait()
    console.print("packserve: stopping - finishing requests in flight")
    # Stop taking new connections, let requests in flight finish, then unload the models.
    await asyncio.gather(http.stop(options.drain_timeout_s), grpc_server.stop(options.drain_timeout_s))
    await engine.shutdown(options.drain_timeout_s)
    await metrics.stop()
    console.print("packserve: stopped")


def serve_command(
    model_repository: Annotated[
        Path, typer.Option("--model-repository", help="Triton-format model repository")
    ],
    http_port: Annotated[int, typer.Option("--http-port")] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port")] = 8001,
    metrics_port: Annotated[int, typer.Option("--metrics-port")] = 8002,
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
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
    drain_timeout: Annotated[
        float, typer.Option("--drain-timeout", help="seconds to finish in-flight requests")
    ] = 30.0,
    inline_execution_us: Annotated[
        int,
        typer.Option(
            "--inline-execution-us",
            min=0,
            help="CPU models whose batches cost less run them on the event loop (0 = never)",
        ),
    ] = EngineOptions.inline_execution_us,
    log_verbose: Annotated[bool, typer.Option("--log-verbose")] = False,
    console: Annotated[
        bool, typer.Option("--console/--no-console", help="web console at /console on the HTTP port")
    ] = True,
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
    options = ServeOptions(
        engine=EngineOptions(
            model_repository=model_repository.resolve(),
            model_control_mode=model_control_mode,
            load_models=tuple(load_model or ()),
            poll_interval_s=repository_poll_secs,
            drain_timeout_s=drain_timeout,
            inline_execution_us=inline_execution_us,
        ),
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        http_limits=HttpLimits(max_body_bytes=max_body_mib << 20),
        grpc=GrpcOptions(
            max_receive_message_bytes=grpc_max_message_mib << 20,
            max_send_message_bytes=grpc_max_message_mib << 20,
        ),
        drain_timeout_s=drain_timeout,
        console=console,
    )
    _run(run_server(options))


def _run(main: object) -> None:
    try:
        import uvloop

        uvloop.run(main)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is missing on Windows
        asyncio.run(main)  # type: ignore[arg-type]
