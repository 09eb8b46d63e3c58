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

from packserve.cli import grpc_flags, hygiene, triton_flags
from packserve.cli.log_setup import configure_logging
from packserve.cli.serve_shutdown import (
    LOCAL_HOST,
    Addresses,
    ShutdownTiming,
    StopSignals,
    drain_and_stop,
)
from packserve.cli.trace_flags import trace_settings
from packserve.config.loader import ConfigLoadOptions
from packserve.core.engine import Engine, EngineOptions
from packserve.core.engine_api import DEFAULT_DRAIN_TIMEOUT_S
from packserve.core.observer import InferenceObserver
from packserve.core.views import IndexEntry, ModelState
from packserve.frontends.grpc import GRPC_IMPLEMENTATIONS, GrpcOptions, GrpcServer
from packserve.frontends.http import (
    ConnectionLimits,
    ConsoleAssets,
    HttpLimits,
    HttpServer,
    raise_open_file_limit,
)
from packserve.frontends.restrictions import Restrictions
from packserve.metrics import MetricsServer, PrometheusObserver
from packserve.metrics.summaries import LatencySummaries

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
    listeners: triton_flags.Listeners = field(default_factory=triton_flags.Listeners)
    exit_on_error: bool = False  # Triton's --exit-on-error: a model that fails at startup stops it
    summary_quantiles: tuple[float, ...] = ()  # --metrics-config summary_latencies=true: these quantiles


def print_model_table(index: list[IndexEntry], console: Console) -> None:
    table = Table(title="Models")
    for column in ("Model", "Version", "Status"):
        table.add_column(column)
    for entry in index:
        status = entry.state if not entry.reason else f"{entry.state}: {entry.reason}"
        style = "green" if entry.state == ModelState.READY else "red"
        table.add_row(entry.name, entry.version or "-", f"[{style}]{status}[/{style}]")
    console.print(table)


async def run_server(options: ServeOptions, console: Console | None = None) -> None:
    """Start the engine and the three front ends; return after SIGTERM/SIGINT has drained them."""
    # soft_wrap: log lines stay whole (greppable) when stderr is a file, not a terminal.
    console = console or Console(stderr=True, soft_wrap=True)
    open_files = raise_open_file_limit()  # before anything opens sockets or models
    log.debug("open-file limit %d", open_files)
    at, timing, allowed = options.addresses, options.shutdown, options.listeners
    metrics = MetricsServer(
        at.metrics_host,
        options.metrics_port,
        cpu_metrics=allowed.cpu_metrics,
        gpu_metrics=allowed.gpu_metrics,
        interval_ms=allowed.metrics_interval_ms,
    )
    observers: list[InferenceObserver] = [PrometheusObserver(metrics.registry)]
    if options.summary_quantiles:
        observers.append(LatencySummaries(metrics.registry, options.summary_quantiles))
    engine = await Engine.start(options.engine, observers=observers)
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
    index = engine.repository_index()
    print_model_table(index, console)
    failed = [e for e in index if e.state != ModelState.READY and e.reason != "unloaded"]
    if options.exit_on_error and failed:
        names = ", ".join(sorted({e.name for e in failed}))
        console.print(f"[red]packserve: failed to load all models ({names}); --exit-on-error is true[/red]")
        await engine.shutdown(0)
        raise SystemExit(1)
    signals = StopSignals(asyncio.get_running_loop())
    listeners = [
        (what, host, port, start)
        for what, host, port, start, on in (
            ("metrics", at.metrics_host, options.metrics_port, metrics.start, allowed.metrics),
            ("gRPC", at.grpc_host, options.grpc_port, grpc_server.start, allowed.grpc),
            ("HTTP", at.http_host, options.http_port, http.start, allowed.http),
        )
        if on
    ]
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
    listening = ", ".join(
        f"{what} on {host}:{port}"
        for what, host, port, on in (
            ("HTTP", at.http_host, http.port, allowed.http),
            ("gRPC", at.grpc_host, grpc_server.port, allowed.grpc),
            ("metrics", at.metrics_host, metrics.port, allowed.metrics),
        )
        if on
    )
    console.print(f"packserve: {listening}")
    log.info("listening: %s", listening)
    if console_assets is not None and allowed.http:
        console.print(f"packserve: web console at http://{at.http_host}:{http.port}/console/")
    await signals.first.wait()
    await drain_and_stop(engine, http, grpc_server, metrics, timing, signals, console)
    console.print("packserve: stopped")


_PORT = {"min": 0, "max": 65535}  # out of range is refused, never wrapped onto another port
_BOOL = {"metavar": "BOOL"}  # Triton's booleans take a value: --allow-http=false


def serve_command(
    model_repository: Annotated[
        list[Path],
        typer.Option(
            "--model-repository",
            "--model-store",
            help="Triton-format model repository; repeat to serve several (model names must be unique)",
        ),
    ],
    http_port: Annotated[int, typer.Option("--http-port", **_PORT)] = 8000,
    grpc_port: Annotated[int, typer.Option("--grpc-port", **_PORT)] = 8001,
    metrics_port: Annotated[int, typer.Option("--metrics-port", **_PORT)] = 8002,
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
    grpc_implementation: Annotated[
        str,
        typer.Option(
            "--grpc-implementation",
            help="native (packserve's own HTTP/2, the fast one) | grpcio (grpc.aio)",
        ),
    ] = "native",
    exit_timeout: Annotated[
        float,
        typer.Option(
            "--exit-timeout-secs",
            "--drain-timeout",
            min=0,
            help="on SIGTERM, once the listeners close: seconds requests in flight get to finish",
        ),
    ] = DEFAULT_DRAIN_TIMEOUT_S,
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
    cpu_execution_slots: Annotated[
        int,
        typer.Option(
            "--cpu-execution-slots",
            min=-1,
            help="batches computing on the CPU at once, all CPU models together; oldest requests "
            "first (-1 = one per core, 0 = no limit)",
        ),
    ] = EngineOptions.cpu_execution_slots,
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory",
            help="shed new requests (503) while resident memory, isolated model workers included, "
            "is above this (e.g. 6GiB); default: no limit",
        ),
    ] = None,
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
    # ---- tritonserver's flags of the same name and meaning (docs/triton-flags.md) ----
    server_id: Annotated[str, typer.Option("--id", help="server name in metadata")] = "packserve",
    exit_on_error: Annotated[str, typer.Option("--exit-on-error", **_BOOL)] = "false",
    strict_readiness: Annotated[str, typer.Option("--strict-readiness", **_BOOL)] = "false",
    disable_auto_complete_config: Annotated[bool, typer.Option("--disable-auto-complete-config")] = False,
    strict_model_config: Annotated[str | None, typer.Option("--strict-model-config", **_BOOL)] = None,
    model_config_name: Annotated[str, typer.Option("--model-config-name")] = "",
    model_load_thread_count: Annotated[int, typer.Option("--model-load-thread-count", min=1)] = 4,
    allow_http: Annotated[str, typer.Option("--allow-http", **_BOOL)] = "true",
    allow_grpc: Annotated[str, typer.Option("--allow-grpc", **_BOOL)] = "true",
    allow_metrics: Annotated[str, typer.Option("--allow-metrics", **_BOOL)] = "true",
    allow_cpu_metrics: Annotated[str, typer.Option("--allow-cpu-metrics", **_BOOL)] = "true",
    allow_gpu_metrics: Annotated[str, typer.Option("--allow-gpu-metrics", **_BOOL)] = "true",
    metrics_interval_ms: Annotated[float, typer.Option("--metrics-interval-ms")] = 2000.0,
    log_verbose: Annotated[int, typer.Option("--log-verbose", help="0 off, 1 per request, 2 detail")] = 0,
    log_file: Annotated[Path | None, typer.Option("--log-file")] = None,
    log_format: Annotated[str, typer.Option("--log-format", help="default | ISO8601 | json")] = "default",
    log_info: Annotated[str, typer.Option("--log-info", **_BOOL)] = "true",
    log_warning: Annotated[str, typer.Option("--log-warning", **_BOOL)] = "true",
    log_error: Annotated[str, typer.Option("--log-error", **_BOOL)] = "true",
    http_header_forward_pattern: Annotated[str, typer.Option("--http-header-forward-pattern")] = "",
    grpc_header_forward_pattern: Annotated[str, typer.Option("--grpc-header-forward-pattern")] = "",
    metrics_config: Annotated[list[str] | None, typer.Option("--metrics-config")] = None,
    trace_config: Annotated[list[str] | None, typer.Option("--trace-config")] = None,
    trace_file: Annotated[str | None, typer.Option("--trace-file", help="deprecated")] = None,
    trace_level: Annotated[list[str] | None, typer.Option("--trace-level", help="deprecated")] = None,
    trace_rate: Annotated[int | None, typer.Option("--trace-rate", help="deprecated")] = None,
    trace_count: Annotated[int | None, typer.Option("--trace-count", help="deprecated")] = None,
    trace_log_frequency: Annotated[int | None, typer.Option("--trace-log-frequency")] = None,
    response_cache_byte_size: Annotated[
        int | None, typer.Option("--response-cache-byte-size", min=0, help="deprecated: --cache-config")
    ] = None,
    rate_limit: Annotated[str, typer.Option("--rate-limit", help="off (no rate limiter)")] = "off",
    rate_limit_resource: Annotated[list[str] | None, typer.Option("--rate-limit-resource")] = None,
    model_load_gpu_limit: Annotated[
        list[str] | None,
        typer.Option(
            "--model-load-gpu-limit", help="<gpu>:<fraction>: no loads while its memory in use is above"
        ),
    ] = None,
    grpc_keepalive_time: grpc_flags.KeepaliveTime = grpc_flags.KEEPALIVE_TIME_MS,
    grpc_keepalive_timeout: grpc_flags.KeepaliveTimeout = grpc_flags.KEEPALIVE_TIMEOUT_MS,
    grpc_keepalive_permit_without_calls: grpc_flags.KeepalivePermitWithoutCalls = "false",
    grpc_http2_max_pings_without_data: grpc_flags.MaxPingsWithoutData = grpc_flags.MAX_PINGS_WITHOUT_DATA,
    grpc_http2_min_recv_ping_interval: grpc_flags.MinRecvPingInterval = grpc_flags.MIN_RECV_PING_INTERVAL_MS,
    grpc_http2_max_ping_strikes: grpc_flags.MaxPingStrikes = grpc_flags.MAX_PING_STRIKES,
    grpc_max_connection_age: grpc_flags.MaxConnectionAge = 0,
    grpc_max_connection_age_grace: grpc_flags.MaxConnectionAgeGrace = 0,
) -> None:
    """Serve model repositories over KServe v2 HTTP and gRPC, with Prometheus metrics."""
    flags = triton_flags
    configure_logging(flags.log_settings(log_verbose, log_file, log_format, log_info, log_warning, log_error))
    if model_control_mode not in ("none", "explicit", "poll"):
        raise typer.BadParameter("must be none, explicit or poll", param_hint="--model-control-mode")
    repositories = flags.model_repositories(model_repository)
    cache_bytes = flags.response_cache_bytes(cache_config, response_cache_byte_size)
    flags.check_rate_limit(rate_limit, rate_limit_resource or ())
    flags.header_forwarding(http_header_forward_pattern, grpc_header_forward_pattern)
    if grpc_implementation not in GRPC_IMPLEMENTATIONS:
        raise typer.BadParameter("must be native or grpcio", param_hint="--grpc-implementation")
    trace = trace_settings(
        trace_config or (), trace_file, trace_level or (), trace_rate, trace_count, trace_log_frequency
    )
    options = ServeOptions(
        engine=EngineOptions(
            model_repository=repositories[0],
            more_repositories=repositories[1:],
            model_control_mode=model_control_mode,
            load_models=tuple(load_model or ()),
            poll_interval_s=repository_poll_secs,
            drain_timeout_s=exit_timeout,
            inline_execution_us=inline_execution_us,
            cpu_execution_slots=cpu_execution_slots,
            server_id=server_id,
            strict_readiness=flags.parse_bool(strict_readiness, "--strict-readiness"),
            config_options=ConfigLoadOptions(
                config_name=flags.check_config_name(model_config_name),
                auto_complete=flags.auto_complete_enabled(disable_auto_complete_config, strict_model_config),
            ),
            model_load_concurrency=model_load_thread_count,
            trace=trace,
            response_cache_bytes=cache_bytes,
            max_memory_bytes=_memory_option(max_memory),
            gpu_load_limits=flags.gpu_load_limits(model_load_gpu_limit or ()),
        ),
        listeners=flags.listeners(
            allow_http, allow_grpc, allow_metrics, allow_cpu_metrics, allow_gpu_metrics, metrics_interval_ms
        ),
        exit_on_error=flags.parse_bool(exit_on_error, "--exit-on-error"),
        summary_quantiles=flags.summary_quantiles(metrics_config or ()),
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
            implementation=grpc_implementation,
            pings=grpc_flags.ping_policy(
                grpc_keepalive_time,
                grpc_keepalive_timeout,
                grpc_keepalive_permit_without_calls,
                grpc_http2_max_pings_without_data,
                grpc_http2_min_recv_ping_interval,
                grpc_http2_max_ping_strikes,
                grpc_max_connection_age,
                grpc_max_connection_age_grace,
            ),
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
    from packserve.planning.formats.units import parse_memory_bytes

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
