"""HTTP vs gRPC on the same server, same run: perf_analyzer 2.51 on `simple` and `simple_ensemble`
(the example repository) at several concurrencies, the two protocols interleaved round by round so
that a machine loaded by other work slows both alike. Medians of the rounds are reported, with the
load average before and after.

    .venv/bin/python bench/grpc_vs_http.py [--rounds 3] [--concurrency 1,8,32] [--source DIR ...]

`--source DIR` (repeatable) serves from another checkout of packserve (PYTHONPATH=DIR), to compare
a change with its baseline in one run: each source gets its own server, measured in turn.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PERF_ANALYZER = ROOT / ".tools" / "bin" / "perf_analyzer"
_THROUGHPUT = re.compile(r"Throughput: ([\d.]+) infer/sec")
_P99 = re.compile(r"p99 latency: (\d+) usec")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _start_server(source: Path, repository: Path, log: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    http_port, grpc_port, metrics_port = _free_ports(3)
    command = [
        sys.executable, "-m", "packserve", "serve", "--model-repository", str(repository),
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(source)}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=source)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2):
                return process, http_port, grpc_port
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"server from {source} did not become ready; see {log}")


def _measure(protocol: str, port: int, model: str, concurrency: int, requests: int) -> tuple[float, int]:
    command = [
        str(PERF_ANALYZER), "-m", model, "-i", protocol, "-u", f"127.0.0.1:{port}",
        "--concurrency-range", str(concurrency), "--measurement-mode", "count_windows",
        "--measurement-request-count", str(requests), "--stability-percentage", "1000", "--max-trials", "5",
    ]  # fmt: skip
    for _ in range(2):  # a loaded machine sometimes yields no stable window: one retry
        output = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
        throughput, p99 = _THROUGHPUT.search(output), _P99.search(output)
        if throughput is not None:
            return float(throughput.group(1)), int(p99.group(1)) if p99 else -1
    raise RuntimeError(f"perf_analyzer failed twice: {' '.join(command)}\n{output[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--models", default="simple,simple_ensemble")
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement window")
    parser.add_argument("--source", type=Path, action="append", help="packserve checkout to serve from")
    args = parser.parse_args(argv)
    sources = [s.resolve() for s in (args.source or [ROOT])]
    work = Path(tempfile.mkdtemp(prefix="grpc-vs-http-"))
    subprocess.run(
        [sys.executable, "-m", "packserve.examples.simple_repository", str(work / "repo")],
        check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    print(f"load average before: {os.getloadavg()}", flush=True)
    columns = ("source", "model", "concurrency", "HTTP infer/s", "gRPC infer/s", "gRPC/HTTP")
    print("| " + " | ".join((*columns, "HTTP p99 us", "gRPC p99 us")) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for index, source in enumerate(sources):
        log = work / f"server-{index}.log"
        process, http_port, grpc_port = _start_server(source, work / "repo", log)
        try:
            for model in args.models.split(","):
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    runs: dict[str, list[tuple[float, int]]] = {"http": [], "grpc": []}
                    for _ in range(args.rounds):
                        for protocol, port in (("http", http_port), ("grpc", grpc_port)):
                            runs[protocol].append(_measure(protocol, port, model, concurrency, args.requests))
                    http = statistics.median(r[0] for r in runs["http"])
                    grpc = statistics.median(r[0] for r in runs["grpc"])
                    http_p99 = int(statistics.median(r[1] for r in runs["http"]))
                    grpc_p99 = int(statistics.median(r[1] for r in runs["grpc"]))
                    print(
                        f"| {source.name} | {model} | {concurrency} | {http:.0f} | {grpc:.0f} | "
                        f"{grpc / http:.2f} | {http_p99} | {grpc_p99} |",
                        flush=True,
                    )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
