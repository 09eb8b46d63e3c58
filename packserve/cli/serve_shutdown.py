"""How `packserve serve` listens and stops: per-listener addresses and the readiness-first drain.

On SIGTERM (or SIGINT) the server turns not-ready at once - `/v2/health/ready` answers 503 and gRPC
health NOT_SERVING - while every listener keeps answering for `drain_delay_s`, the time a load
balancer needs to stop routing here (Kubernetes removes the pod from its Service's endpoints once
readiness fails, asynchronously). Only then do the listeners close; requests already accepted
finish within `exit_timeout_s`, the models unload, and the process exits 0 - or 1 when requests
were still in flight at that deadline (a hung model), as tritonserver does. A second signal skips
what is left of the delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass

from rich.console import Console

from packserve.core.engine import Engine
from packserve.core.engine_api import DEFAULT_DRAIN_TIMEOUT_S
from packserve.frontends.grpc import GrpcServer
from packserve.frontends.http import HttpServer
from packserve.metrics import MetricsServer

# Local runs stay private by default; containers pass --host 0.0.0.0 (Triton's default).
LOCAL_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Addresses:
    """Where each listener binds; an unset one falls back to `host` (the one-flag form)."""

    host: str = LOCAL_HOST
    http: str | None = None
    grpc: str | None = None
    metrics: str | None = None

    @property
    def http_host(self) -> str:
        return self.http or self.host

    @property
    def grpc_host(self) -> str:
        return self.grpc or self.host

    @property
    def metrics_host(self) -> str:
        return self.metrics or self.host


@dataclass(frozen=True)
class ShutdownTiming:
    drain_delay_s: float = 0.0  # not ready but still serving, before the listeners close
    exit_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S  # then: the most time requests in flight get to finish


class StopSignals:
    """The first SIGTERM/SIGINT starts the drain; a second one cuts the delay short."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.first = asyncio.Event()
        self.again = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._received)

    def _received(self) -> None:
        (self.again if self.first.is_set() else self.first).set()


async def drain_and_stop(
    engine: Engine,
    http: HttpServer,
    grpc_server: GrpcServer,
    metrics: MetricsServer,
    timing: ShutdownTiming,
    signals: StopSignals,
    console: Console,
) -> None:
    engine.withdraw_readiness()
    if timing.drain_delay_s > 0:
        console.print(
            f"packserve: stopping - not ready now, still serving for {timing.drain_delay_s:g}s "
            "while load balancers stop routing here"
        )
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(signals.again.wait(), timing.drain_delay_s)
    console.print("packserve: closing listeners - finishing requests in flight")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timing.exit_timeout_s
    await asyncio.gather(http.stop(timing.exit_timeout_s), grpc_server.stop(timing.exit_timeout_s))
    drained = await engine.shutdown(max(0.0, deadline - loop.time()))
    # Metrics last: a scrape during the drain still sees the final counts.
    await metrics.stop()
    if not drained:  # as Triton at its exit timeout: work was abandoned, exit non-zero
        console.print("[red]packserve: stopped with requests still in flight after the exit timeout[/red]")
        raise SystemExit(1)
