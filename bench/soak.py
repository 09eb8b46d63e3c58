"""Soak: mixed HTTP + gRPC traffic at a fraction of capacity for minutes, watching the server's RSS
and open files (their slope should be flat within noise), errors (should be none) and stalls.

    .venv/bin/python -m bench.soak --duration-s 600 --fraction 0.5 --out bench/results/soak.json

It starts `packserve serve` on the example repository (free ports, loopback), measures capacity
with a short closed loop over the same connections, then sends at `fraction` of it, open loop,
half the connections HTTP/1.1 keep-alive (binary tensors) and half gRPC. Every `--sample-s` it
records RSS, open files, requests, errors and the worst latency of the window. Outside CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as grpcaio
from tritonclient.grpc import InferInput

from packserve.examples.simple_repository import build_simple_repository
from tests.e2e.e2e_server import HOST, start_live_server
from tests.reliability.hostile import open_files, rss_mib

_VALUES = np.arange(16, dtype=np.int32).reshape(1, 16)
_JSON = json.dumps(
    {
        "inputs": [
            {"name": name, "shape": [1, 16], "datatype": "INT32", "parameters": {"binary_data_size": 64}}
            for name in ("INPUT0", "INPUT1")
        ],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
    }
).encode()
_BODY = _JSON + _VALUES.tobytes() * 2


@dataclass
class Window:
    at_s: float
    rss_mib: float
    open_files: int
    requests: int = 0
    errors: int = 0
    worst_ms: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


class Tally:
    def __init__(self) -> None:
        self.window = Window(0.0, 0.0, 0)
        self.error_samples: list[str] = []

    def record(self, started: float, error: str | None) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        window = self.window
        window.requests += 1
        window.latencies_ms.append(elapsed_ms)
        window.worst_ms = max(window.worst_ms, elapsed_ms)
        if error is not None:
            window.errors += 1
            if len(self.error_samples) < 20:
                self.error_samples.append(error)


async def http_worker(port: int, model: str, interval_s: float, stop_at: float, tally: Tally) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        f"Inference-Header-Content-Length: {len(_JSON)}\r\nContent-Length: {len(_BODY)}\r\n\r\n"
    ).encode()
    next_at = time.perf_counter()
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            error: str | None = None
            try:
                writer.write(head + _BODY)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                if not status_line.startswith(b"HTTP/1.1 200"):
                    error = f"http: {status_line.decode(errors='replace').strip()}"
            except (OSError, asyncio.IncompleteReadError) as exc:
                error = f"http: {type(exc).__name__}: {exc}"
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
            tally.record(started, error)
            next_at = await _pace(next_at, interval_s)
    finally:
        writer.close()


async def grpc_worker(url: str, model: str, interval_s: float, stop_at: float, tally: Tally) -> None:
    client = grpcaio.InferenceServerClient(url)
    inputs = [InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for item in inputs:
        item.set_data_from_numpy(_VALUES)
    next_at = time.perf_counter()
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            error: str | None = None
            try:
                await client.infer(model, inputs)
            except Exception as exc:  # every failure counts; the soak goes on
                error = f"grpc: {exc}"
            tally.record(started, error)
            next_at = await _pace(next_at, interval_s)
    finally:
        await client.close()


async def _pace(next_at: float, interval_s: float) -> float:
    """Open loop: the next send is due `interval_s` after the last one was due (closed loop at 0)."""
    if interval_s <= 0:
        return next_at
    next_at += interval_s
    delay = next_at - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    else:
        next_at = time.perf_counter()  # behind: do not burst to catch up
    return next_at


async def run_phase(
    server_pid: int, http_port: int, grpc_url: str, args: argparse.Namespace, rate: float, seconds: float
) -> tuple[list[Window], list[str]]:
    tally = Tally()
    windows: list[Window] = []
    workers = args.connections
    interval = workers / rate if rate > 0 else 0.0
    started = time.perf_counter()
    stop_at = started + seconds
    tally.window = Window(0.0, rss_mib(server_pid), open_files(server_pid))
    tasks = [
        asyncio.create_task(
            http_worker(http_port, args.model, interval, stop_at, tally)
            if i % 2 == 0
            else grpc_worker(grpc_url, args.model, interval, stop_at, tally)
        )
        for i in range(workers)
    ]
    while time.perf_counter() < stop_at:
        await asyncio.sleep(min(args.sample_s, max(0.0, stop_at - time.perf_counter())))
        now = time.perf_counter() - started
        windows.append(tally.window)
        tally.window = Window(now, rss_mib(server_pid), open_files(server_pid))
    await asyncio.gather(*tasks)
    windows.append(tally.window)
    return windows, tally.error_samples


def _slope_per_min(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs = np.array([p[0] for p in points]) / 60
    ys = np.array([p[1] for p in points])
    return float(np.polyfit(xs, ys, 1)[0])


def summarize(windows: list[Window], seconds: float) -> dict[str, object]:
    latencies = [ms for w in windows for ms in w.latencies_ms]
    # The first minute is warm-up (allocator pools, gRPC channels): the slope is taken after it.
    steady = [w for w in windows if w.at_s >= min(60.0, seconds / 3)]
    return {
        "requests": sum(w.requests for w in windows),
        "errors": sum(w.errors for w in windows),
        "rate_per_s": round(sum(w.requests for w in windows) / seconds, 1),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 2) if latencies else None,
        "worst_ms": round(max((w.worst_ms for w in windows), default=0.0), 1),
        "rss_mib_first_last": [round(windows[0].rss_mib, 1), round(windows[-1].rss_mib, 1)],
        "rss_slope_mib_per_min": round(_slope_per_min([(w.at_s, w.rss_mib) for w in steady]), 3),
        "open_files_first_last": [windows[0].open_files, windows[-1].open_files],
        "open_files_slope_per_min": round(_slope_per_min([(w.at_s, w.open_files) for w in steady]), 3),
    }


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="packserve-soak-"))
    repository = build_simple_repository(work / "repo")
    server = start_live_server(repository, work)
    load_before = os.getloadavg()
    try:
        pid = server.process.pid
        calib, _ = await run_phase(pid, server.http_port, server.grpc_url, args, 0.0, args.calibrate_s)
        capacity = sum(w.requests for w in calib) / args.calibrate_s
        rate = capacity * args.fraction
        print(f"capacity {capacity:.0f} req/s (closed loop); soaking at {rate:.0f} req/s, {args.duration_s}s")
        port, url = server.http_port, server.grpc_url
        windows, samples = await run_phase(pid, port, url, args, rate, args.duration_s)
        result: dict[str, object] = {
            "capacity_per_s": round(capacity, 1),
            "target_rate_per_s": round(rate, 1),
            "connections": args.connections,
            "duration_s": args.duration_s,
            **summarize(windows, args.duration_s),
            "error_samples": samples,
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "windows": [{k: v for k, v in asdict(w).items() if k != "latencies_ms"} for w in windows],
        }
    finally:
        result_code = server.terminate()
    result["server_exit_code"] = result_code
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--calibrate-s", type=float, default=15.0)
    parser.add_argument("--fraction", type=float, default=0.5, help="of the measured capacity")
    parser.add_argument("--connections", type=int, default=48, help="half HTTP, half gRPC")
    parser.add_argument("--model", default="simple")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/soak.json"))
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, indent=2))
    return 0 if result["errors"] == 0 and result["server_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
