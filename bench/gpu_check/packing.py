"""Packing: seven models in one server process on the GPU vs one model per process on the same GPU.

Packed: one `packserve serve` with the `pack` ensemble (GPU preprocessing, seven nets), driven by
perf_analyzer over HTTP and then gRPC at concurrency C. Per-process: one `packserve serve` per net
(CPU preprocessing in front of it), all driven at once over gRPC, each at concurrency C, so both
layouts have C images in flight per model. Throughput is compared in images through all seven
models per second: the ensemble's rate packed, the per-process servers' summed rate / 7. GPU busy
% is NVML's utilization.gpu sampled every 100 ms during each run; GPU memory per process from
NVML where the driver reports it. /metrics of the packed server is scraped mid-run for the nv_gpu_*
gauges.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.gpu_check import repository as repo
from bench.gpu_check.common import (
    HOST,
    NvmlSampler,
    Settings,
    bytes_input_file,
    device_index,
    perf_analyzer_command,
    read_perf_csv,
    run_perf_analyzers,
    scrape,
    serving,
)
from bench.gpu_check.nets import NETS

SEED_BUSY_PACKED, SEED_BUSY_SOLO, SEED_SPEEDUP = 80.0, 35.0, 2.0
GPU_GAUGES = ("nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_power_usage")


def _gauges(text: str) -> dict[str, float | None]:
    found: dict[str, float | None] = {}
    for name in GPU_GAUGES:
        match = re.search(rf"^{name}\{{[^}}]*\}} ([0-9.eE+-]+)$", text, re.MULTILINE)
        found[name] = float(match.group(1)) if match else None
    return found


def _drive(
    settings: Settings, runs: list[tuple[str, str, str]], tag: str, during: Callable[[], None] | None = None
) -> tuple[list[dict[str, float]], float | None, dict[int, int]]:
    """perf_analyzer runs (model, url, protocol) at once; their figures, GPU busy %, memory per pid."""
    concurrency = 2 if settings.quick else 32
    data = bytes_input_file(settings.work / "image.json", "IMAGE", settings.sample_jpeg)
    commands, logs, csvs = [], [], []
    for index, (model, url, protocol) in enumerate(runs):
        csv_path = settings.work / f"{tag}_{index}.csv"
        commands.append(perf_analyzer_command(settings, model, url, protocol, concurrency, data, csv_path))
        logs.append(settings.work / f"{tag}_{index}.log")
        csvs.append(csv_path)
    memory: dict[int, int] = {}
    with NvmlSampler(device_index(settings.device)) as sampler:
        probe = None
        if during is not None or sampler.available:

            def mid_run() -> None:
                time.sleep(3.0 if settings.quick else 6.0)
                memory.update(sampler.process_memory())
                if during is not None:
                    during()

            probe = threading.Thread(target=mid_run, daemon=True)
            probe.start()
        run_perf_analyzers(commands, logs, timeout_s=120 if settings.quick else 150)
        if probe is not None:
            probe.join(timeout=30)
    return [read_perf_csv(c) for c in csvs], sampler.busy_percent(), memory


def run(settings: Settings) -> dict[str, Any]:
    if settings.perf_analyzer is None:
        return {
            "skipped": "perf_analyzer not found (give --perf-analyzer or set PERF_ANALYZER)",
            "checks": [],
        }
    packed = repo.write_packed(settings.work, settings.nets_dir, settings.shape, settings.device, 2)
    result: dict[str, Any] = {"concurrency": 2 if settings.quick else 32, "models": list(NETS)}
    metrics: dict[str, Any] = {}
    phases: dict[str, float] = {}  # seconds each phase took, start-up included: where the time goes
    mark = time.perf_counter()
    with serving([packed], [settings.work / "packed_server.log"], settings.cuda) as (server,):
        phases["packed_start"] = round(time.perf_counter() - mark, 1)

        def read_metrics() -> None:
            metrics.update(_gauges(scrape(f"http://{HOST}:{server.metrics_port}/metrics")))

        layouts = {}
        for protocol, port in (("http", server.http_port), ("grpc", server.grpc_port)):
            figures, busy, memory = _drive(
                settings,
                [(repo.ENSEMBLE, f"{HOST}:{port}", protocol)],
                f"packed_{protocol}",
                read_metrics if protocol == "grpc" else None,
            )
            layouts[f"packed_{protocol}"] = {
                **figures[0],
                "images_per_s": figures[0]["throughput_per_s"],
                "gpu_busy_percent": busy,
                "gpu_memory_bytes": memory.get(server.process.pid),
            }
            phases[f"packed_{protocol}"] = round(time.perf_counter() - mark - sum(phases.values()), 1)
    # The dry run starts 1 of the 7 per-process servers: same code path, a fraction of the start-up.
    solo_nets = list(NETS)[:1] if settings.quick else list(NETS)
    threads = max(1, settings.cores // len(solo_nets))
    solos = [
        repo.write_solo(settings.work, settings.nets_dir, settings.shape, settings.device, n, threads)
        for n in solo_nets
    ]
    mark = time.perf_counter()
    with serving(solos, [settings.work / f"solo_{n}.log" for n in solo_nets], settings.cuda) as servers:
        phases["per_process_start"] = round(time.perf_counter() - mark, 1)
        runs = [(repo.ENSEMBLE, f"{HOST}:{s.grpc_port}", "grpc") for s in servers]
        figures, busy, memory = _drive(settings, runs, "solo")
        per_model = {n: f for n, f in zip(solo_nets, figures, strict=True)}
        layouts["per_process_grpc"] = {
            # Every image must visit each server: images/s through all of them is their sum / count.
            "images_per_s": sum(f["throughput_per_s"] for f in figures) / len(solo_nets),
            "p50_ms": max(f["p50_ms"] for f in figures),
            "p99_ms": max(f["p99_ms"] for f in figures),
            "gpu_busy_percent": busy,
            "per_model": per_model,
            "gpu_memory_bytes": {
                n: memory.get(s.process.pid) for n, s in zip(solo_nets, servers, strict=True)
            },
        }
    phases["per_process_grpc"] = round(time.perf_counter() - mark - phases["per_process_start"], 1)
    result["layouts"] = layouts
    result["phase_seconds"] = phases
    result["metrics"] = metrics
    packed_rate = layouts["packed_grpc"]["images_per_s"]
    solo_rate = layouts["per_process_grpc"]["images_per_s"]
    result["speedup"] = round(packed_rate / solo_rate, 2) if solo_rate else None
    busy_packed = layouts["packed_grpc"]["gpu_busy_percent"]
    busy_solo = layouts["per_process_grpc"]["gpu_busy_percent"]
    gpu = settings.cuda
    result["checks"] = [
        {
            "check": f"packed throughput >= {SEED_SPEEDUP}x per-process (gRPC)",
            "ok": (result["speedup"] or 0) >= SEED_SPEEDUP if gpu else None,
            "figures": {
                "packed_images_per_s": round(packed_rate, 1),
                "per_process_images_per_s": round(solo_rate, 1),
                "speedup": result["speedup"],
            },
        },
        {
            "check": f"GPU busy >= {SEED_BUSY_PACKED}% packed (per-process seed: {SEED_BUSY_SOLO}%)",
            "ok": (busy_packed or 0) >= SEED_BUSY_PACKED if gpu else None,
            "figures": {"packed_busy_percent": busy_packed, "per_process_busy_percent": busy_solo},
        },
        {
            "check": f"{', '.join(GPU_GAUGES)} in /metrics with real values",
            "ok": all((metrics.get(g) or 0) > 0 for g in GPU_GAUGES[1:])
            and metrics.get(GPU_GAUGES[0]) is not None
            if gpu
            else None,
            "figures": metrics,
        },
    ]
    return result
