"""What every section of the GPU check shares: settings, test images, servers, perf_analyzer, NVML."""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.image_preprocess import synthetic_photo

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Settings:
    device: str  # "cuda:N" or "cpu"
    quick: bool
    out: Path
    work: Path  # scratch: repositories, logs, perf_analyzer files
    perf_analyzer: str | None
    nets_dir: Path = Path()  # the seven TorchScript nets, built once by __main__
    shape: Any = None  # repository.Shape: FULL, or QUICK for the dry run
    sample_jpeg: bytes = b""  # the image the served sections send
    cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def find_perf_analyzer(explicit: str | None) -> str | None:
    candidates = [
        explicit,
        os.environ.get("PERF_ANALYZER"),
        str(REPO_ROOT / ".tools" / "bin" / "perf_analyzer"),
    ]
    candidates.append(shutil.which("perf_analyzer"))
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            probe = subprocess.run([candidate, "--version"], capture_output=True, text=True, check=False)
            if "Perf Analyzer" in probe.stdout + probe.stderr:
                return candidate
    return None


def jpeg_set(width: int, height: int, count: int) -> list[bytes]:
    """`count` distinct synthetic photographs (bench/image_preprocess.py), quality-90 JPEGs."""
    out = []
    for seed in range(count):
        buffer = io.BytesIO()
        Image.fromarray(synthetic_photo(width, height, seed)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


def packserve_argv(cuda: bool) -> list[str]:
    """How to start the packserve CLI. On a GPU, torch is imported first: config loading counts
    GPUs through torch when it is loaded, else through /proc/driver/nvidia, which a sandboxed
    GPU machine (gVisor) may not have."""
    if cuda:
        return [sys.executable, "-c", "import torch; from packserve.cli import main; main()"]
    return [sys.executable, "-m", "packserve"]


def start_server(repository: Path, log: Path, cuda: bool) -> Server:
    http_port, grpc_port, metrics_port = free_ports(3)
    command = [
        *packserve_argv(cuda), "serve", "--model-repository", str(repository), "--host", HOST,
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return Server(process, http_port, grpc_port, metrics_port, log)


def wait_ready(servers: Sequence[Server], timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(servers)
    while pending:
        for server in list(pending):
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"server exited before ready:\n{server.log.read_text(errors='replace')[-3000:]}"
                )
            url = f"http://{HOST}:{server.http_port}/v2/health/ready"
            with contextlib.suppress(OSError), _DIRECT.open(url, timeout=2) as reply:
                if reply.status == 200:
                    pending.remove(server)
        if pending and time.monotonic() > deadline:
            raise RuntimeError(
                f"server not ready in {timeout_s}s:\n{pending[0].log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.3)


@contextlib.contextmanager
def serving(repositories: Sequence[Path], logs: Sequence[Path], cuda: bool) -> Iterator[list[Server]]:
    servers = [start_server(r, log, cuda) for r, log in zip(repositories, logs, strict=True)]
    try:
        wait_ready(servers)
        yield servers
    finally:
        for server in servers:
            server.stop()


def scrape(url: str) -> str:
    with _DIRECT.open(url, timeout=10) as reply:
        return str(reply.read().decode())


def bytes_input_file(path: Path, input_name: str, payload: bytes) -> Path:
    """perf_analyzer --input-data: one BYTES element; "b64" content is the serialized tensor
    (4-byte little-endian length, then the bytes)."""
    wire = len(payload).to_bytes(4, "little") + payload
    document = {"data": [{input_name: {"content": {"b64": base64.b64encode(wire).decode()}, "shape": [1]}}]}
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def perf_analyzer_command(
    settings: Settings,
    model: str,
    url: str,
    protocol: str,
    concurrency: int,
    input_data: Path,
    csv_path: Path,
) -> list[str]:
    assert settings.perf_analyzer is not None
    # The dry run measures a fixed count of requests in one go (windows of a busy CPU's throughput
    # may differ tenfold and never agree). The GPU run measures 4 s windows; the last three are
    # accepted and averaged whatever their spread (stability 1000%), so a run that does not settle
    # still gives figures inside the time the GPU is lent for.
    if settings.quick:
        window = ["--request-count", str(6 * concurrency)]
    else:
        window = ["--measurement-mode", "time_windows", "--measurement-interval", "4000"]
        window += ["--stability-percentage", "1000", "--max-trials", "3"]
    return [
        settings.perf_analyzer, "-m", model, "-i", protocol, "-u", url, "-b", "1",
        "--concurrency-range", f"{concurrency}:{concurrency}", "--input-data", str(input_data),
        # Binary tensors on HTTP as on gRPC: the JSON path would measure the codec.
        "--input-tensor-format", "binary", "--output-tensor-format", "binary",
        *window, "-f", str(csv_path),
    ]  # fmt: skip


def read_perf_csv(path: Path) -> dict[str, float]:
    """Throughput (inferences/s) and client latency percentiles (ms) of the last row."""
    rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    if not rows:
        raise RuntimeError(f"perf_analyzer wrote no rows to {path}")
    row = rows[-1]
    return {
        "throughput_per_s": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1000.0,
        "p99_ms": float(row["p99 latency"]) / 1000.0,
    }


def run_perf_analyzers(commands: Sequence[list[str]], logs: Sequence[Path], timeout_s: float) -> None:
    """Run perf_analyzer commands at the same time; raise with the log tail of any that failed."""
    processes = [
        subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        for command, log in zip(commands, logs, strict=True)
    ]
    deadline = time.monotonic() + timeout_s
    for process, log in zip(processes, logs, strict=True):
        try:
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = -9
        if code != 0:
            for other in processes:
                if other.poll() is None:
                    other.kill()
            raise RuntimeError(f"perf_analyzer exited {code}:\n{log.read_text(errors='replace')[-2000:]}")


class NvmlSampler:
    """GPU busy % (NVML's utilization.gpu) sampled every 100 ms on a thread; absent without NVML."""

    def __init__(self, device_index: int) -> None:
        self.samples: list[float] = []
        self._handle: Any = None
        self._nvml: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            self._nvml = pynvml
        except Exception:  # no nvidia-ml-py, or no driver: nothing to sample
            self._nvml = None

    @property
    def available(self) -> bool:
        return self._nvml is not None

    def __enter__(self) -> NvmlSampler:
        if self.available:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))

    def busy_percent(self) -> float | None:
        # The first second covers perf_analyzer's start and warm-up; leave it out when there is more.
        kept = self.samples[10:] if len(self.samples) > 30 else self.samples
        return float(np.mean(kept)) if kept else None

    def process_memory(self) -> dict[int, int]:
        """Device memory used per process id, where NVML reports it."""
        if not self.available:
            return {}
        try:
            running = self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
        except Exception:
            return {}
        return {int(p.pid): int(p.usedGpuMemory or 0) for p in running}


def device_index(device: str) -> int:
    return int(device.split(":")[1]) if device.startswith("cuda") else 0
