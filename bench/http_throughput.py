"""HTTP throughput of `packserve serve` on the add/sub `simple` model with binary tensors.

    .venv/bin/python bench/http_throughput.py [--duration 5] [--concurrency 1 8 32]

Starts packserve on the example repository (packserve.examples.simple_repository), measures
requests/s and p50/p99 latency at each concurrency with perf_analyzer when it is installed
(scripts/install_perf_analyzer.sh) or else a compact asyncio keep-alive client, then runs the same
ONNX model in a bare onnxruntime loop for comparison. Prints a table and writes
bench/results/http_throughput.json. The load generator shares the machine with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
MODEL = "simple"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _perf_analyzer() -> str | None:
    for candidate in (REPO_ROOT / ".tools" / "bin" / "perf_analyzer", shutil.which("perf_analyzer")):
        if candidate and Path(candidate).exists():
            probe = subprocess.run([str(candidate), "--version"], capture_output=True, text=True, check=False)
            if "Perf Analyzer" in probe.stdout + probe.stderr:
                return str(candidate)
    return None


def _start_server(repository: Path, http_port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-c",
        "from packserve.cli import main; main()",
        "serve",
        "--model-repository",
        str(repository),
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(_free_port()),
        "--metrics-port",
        str(_free_port()),
    ]
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    request = f"GET /v2/models/{MODEL}/ready HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("packserve exited before becoming ready")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError("packserve did not become ready")


# ------------------------------------------------------------------------------ perf_analyzer


def run_perf_analyzer(binary: str, port: int, concurrency: int, duration_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.csv"
        command = [
            binary,
            "-m",
            MODEL,
            "-u",
            f"127.0.0.1:{port}",
            "-i",
            "http",
            "--concurrency-range",
            str(concurrency),
            "--measurement-interval",
            str(int(duration_s * 1000)),
            # A shared 2-core machine is noisy: stabilise loosely, on throughput and mean latency.
            "--stability-percentage",
            "100",
            "--max-trials",
            "10",
            "-f",
            str(report),
        ]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=duration_s * 12 + 60)
        row = next(csv.DictReader(io.StringIO(report.read_text())))
    return {
        "requests_per_s": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1000.0,
        "p99_ms": float(row["p99 latency"]) / 1000.0,
    }


# --------------------------------------------------------------------------- asyncio fallback


def _binary_request(port: int) -> bytes:
    payload = np.arange(16, dtype=np.int32).reshape(1, 16).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {"name": n, "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}}
                for n in ("INPUT0", "INPUT1")
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    body = header + payload + payload
    head = (
        f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(header)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _connection(port: int, request: bytes, stop_at: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected response: {head[:80]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


def run_asyncio_client(port: int, concurrency: int, duration_s: float) -> dict[str, float]:
    request = _binary_request(port)

    async def main() -> list[float]:
        warmup: list[float] = []
        await asyncio.gather(
            *(_connection(port, request, time.perf_counter() + 0.5, warmup) for _ in range(concurrency))
        )
        latencies: list[float] = []
        await asyncio.gather(
            *(
                _connection(port, request, time.perf_counter() + duration_s, latencies)
                for _ in range(concurrency)
            )
        )
        return latencies

    try:
        import uvloop

        latencies = uvloop.run(main())
    except ImportError:
        latencies = asyncio.run(main())
    array = np.array(latencies) * 1000.0
    return {
        "requests_per_s": len(latencies) / duration_s,
        "p50_ms": float(np.percentile(array, 50)),
        "p99_ms": float(np.percentile(array, 99)),
    }


# ---------------------------------------------------------------------------------- bare model


def run_bare_onnx(repository: Path, duration_s: float) -> dict[str, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(repository / MODEL / "1" / "model.onnx"), options)
    feeds = {i.name: np.arange(16, dtype=np.int32).reshape(1, 16) for i in session.get_inputs()}
    latencies = []
    stop_at = time.perf_counter() + duration_s
    while time.perf_counter() < stop_at:
        start = time.perf_counter()
        session.run(None, feeds)
        latencies.append(time.perf_counter() - start)
    array = np.array(latencies) * 1000.0
    return {
        "requests_per_s": len(latencies) / duration_s,
        "p50_ms": float(np.percentile(array, 50)),
        "p99_ms": float(np.percentile(array, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--client", choices=["auto", "perf_analyzer", "asyncio"], default="auto")
    args = parser.parse_args()

    from packserve.examples.simple_repository import build_simple_repository

    perf_analyzer = _perf_analyzer() if args.client in ("auto", "perf_analyzer") else None
    if args.client == "perf_analyzer" and perf_analyzer is None:
        sys.exit("perf_analyzer is not installed; run scripts/install_perf_analyzer.sh")
    client = "perf_analyzer" if perf_analyzer else "asyncio"

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        repository = build_simple_repository(Path(tmp) / "repository")
        port = _free_port()
        log = Path(tmp) / "packserve.log"
        server = _start_server(repository, port, log)
        try:
            _wait_ready(port, server)
            for concurrency in args.concurrency:
                if perf_analyzer:
                    result = run_perf_analyzer(perf_analyzer, port, concurrency, args.duration)
                else:
                    result = run_asyncio_client(port, concurrency, args.duration)
                rows.append({"mode": f"http ({client})", "concurrency": concurrency, **result})
        except Exception:
            sys.stderr.write(log.read_text()[-4000:])
            raise
        finally:
            server.terminate()
            server.wait(timeout=30)
        rows.append(
            {"mode": "bare onnxruntime loop", "concurrency": 1, **run_bare_onnx(repository, args.duration)}
        )

    print(f"{'mode':28} {'conc':>5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        print(
            f"{row['mode']!s:28} {row['concurrency']!s:>5} {row['requests_per_s']:>10.0f} "
            f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "http_throughput.json"
    document = {
        "model": MODEL,
        "client": client,
        "cpus": os.cpu_count(),
        "duration_s": args.duration,
        "rows": rows,
    }
    out.write_text(json.dumps(document, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
