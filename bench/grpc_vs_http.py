"""HTTP vs gRPC on the same server, same run: perf_analyzer 2.51 on `simple` and `simple_ensemble`
(the example repository) at several concurrencies, the two protocols interleaved round by round so
that a machine loaded by other work slows both alike. Medians of the rounds are reported, with the
load average before and after.

    .venv/bin/python bench/grpc_vs_http.py [--rounds 3] [--concurrency 1,8,32] [--source DIR ...]
        [--implementations native,grpcio]

`--implementations` picks the gRPC transports (`--grpc-implementation`): one server per transport,
all started at once; HTTP is measured on the first, and in every round HTTP and each transport run
one after another, so all see the same load.

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


def _start_server(
    source: Path, repository: Path, log: Path, implementation: str
) -> tuple[subprocess.Popen[bytes], int, int]:
    http_port, grpc_port, metrics_port = _free_ports(3)
    command = [
        sys.executable, "-m", "packserve", "serve", "--model-repository", str(repository),
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
        "--grpc-implementation", implementation,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(source)}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=source)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:  # exited at once (a bad flag, an older checkout): no wait
            raise RuntimeError(f"server from {source} exited with {process.returncode}; see {log}")
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
    parser.add_argument("--implementations", default="native,grpcio", help="gRPC transports to compare")
    args = parser.parse_args(argv)
    sources = [s.resolve() for s in (args.source or [ROOT])]
    implementations = args.implementations.split(",")
    work = Path(tempfile.mkdtemp(prefix="grpc-vs-http-"))
    subprocess.run(
        [sys.executable, "-m", "packserve.examples.simple_repository", str(work / "repo")],
        check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    print(f"load average before: {os.getloadavg()}", flush=True)
    columns = ["source", "model", "c", "HTTP infer/s"]
    columns += [f"gRPC {name} infer/s" for name in implementations]
    columns += [f"{name}/HTTP" for name in implementations]
    columns += ["HTTP p99 us"] + [f"{name} p99 us" for name in implementations]
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for index, source in enumerate(sources):
        servers: dict[str, tuple[subprocess.Popen[bytes], int, int]] = {}
        try:
            # Inside the try: when one server fails to start, the ones already started are stopped.
            for name in implementations:
                log = work / f"server-{index}-{name}.log"
                servers[name] = _start_server(source, work / "repo", log, name)
            targets = [("HTTP", "http", servers[implementations[0]][1])]
            targets += [(name, "grpc", servers[name][2]) for name in implementations]
            for model in args.models.split(","):
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    runs: dict[str, list[tuple[float, int]]] = {label: [] for label, _, _ in targets}
                    for _ in range(args.rounds):
                        for label, protocol, port in targets:
                            runs[label].append(_measure(protocol, port, model, concurrency, args.requests))
                    rate = {label: statistics.median(r[0] for r in runs[label]) for label in runs}
                    p99 = {label: int(statistics.median(r[1] for r in runs[label])) for label in runs}
                    cells = [source.name, model, str(concurrency)] + [f"{rate[label]:.0f}" for label in runs]
                    cells += [f"{rate[name] / rate['HTTP']:.2f}" for name in implementations]
                    cells += [str(p99[label]) for label in runs]
                    print("| " + " | ".join(cells) + " |", flush=True)
        finally:
            for process, _, _ in servers.values():
                process.send_signal(signal.SIGTERM)
            for process, _, _ in servers.values():
                process.wait(timeout=60)
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
