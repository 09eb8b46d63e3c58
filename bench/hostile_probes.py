"""Issue 10's hostile-client probes (the faulty-model ones are bench/reliability_probes.py),
measured (not asserted) against one packserve checkout, so the same probes can be run before and
after a change and compared:

    .venv/bin/python -m bench.hostile_probes --checkout /work/main --out bench/results/before.json
    .venv/bin/python -m bench.hostile_probes --checkout . --out bench/results/after.json

The server runs from `--checkout` (its PYTHONPATH) with default flags, a soft open-file limit of
1,024, on loopback. The tests in tests/reliability assert the outcomes; this reports the figures.
About three minutes per checkout; figures depend on machine load (the load average is recorded).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from tests.e2e.e2e_server import LiveServer
from tests.reliability.hostile import (
    BIG_ANSWER_REQUEST,
    build_hostile_repository,
    connect,
    rss_mib,
    send_quietly,
    settle_rss,
    start_server,
)

SIMPLE_BODY = json.dumps(
    {
        "inputs": [
            {"name": n, "shape": [1, 16], "datatype": "INT32", "data": list(range(16))}
            for n in ("INPUT0", "INPUT1")
        ]
    }
).encode()
SLOW_BODY = b'{"inputs":[{"name":"IN","shape":[1],"datatype":"FP32","data":[1.0]}]}'


def _post(path: str, body: bytes, keep_alive: bool = True) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n" + ("" if keep_alive else "Connection: close\r\n") + "\r\n"
    ).encode() + body


def _exchange(sock: socket.socket, request: bytes) -> int:
    """Send one request on a keep-alive socket and read its answer; the status."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return int(head.split()[1])


def _closed_loop(
    port: int, request: bytes, clients: int, seconds: float, per_client_rate: float = 0.0
) -> dict[str, Any]:
    """`clients` keep-alive clients for `seconds`: rate, p99 and status counts. With
    `per_client_rate` each client sends at most that many requests a second (offered load =
    clients x rate, as an open loop would, so refused requests are not retried at once)."""
    latencies: dict[int, list[float]] = {}
    failures = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def run() -> None:
        sock: socket.socket | None = None
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            if per_client_rate > 0:
                next_at += 1.0 / per_client_rate
                time.sleep(max(0.0, next_at - time.monotonic()))
            started = time.perf_counter()
            try:
                if sock is None:
                    sock = connect(port, timeout_s=10)
                status = _exchange(sock, request)
            except OSError:
                failures[0] += 1
                if sock is not None:
                    sock.close()
                sock = None
                continue
            with lock:
                latencies.setdefault(status, []).append((time.perf_counter() - started) * 1000)
        if sock is not None:
            sock.close()

    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    summary: dict[str, Any] = {"connection_failures": failures[0]}
    for status, values in sorted(latencies.items()):
        summary[str(status)] = {
            "count": len(values),
            "per_s": round(len(values) / seconds, 1),
            "p50_ms": round(statistics.median(values), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1),
        }
    return summary


def _probe_latency(port: int, path: str, seconds: float) -> dict[str, Any]:
    """A probe every 50 ms on fresh connections, as a kubelet does: p99 and failures."""
    values: list[float] = []
    failures = 0
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            with contextlib.closing(connect(port, timeout_s=5)) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                sock.recv(4096)
            values.append((time.perf_counter() - started) * 1000)
        except OSError:
            failures += 1
        time.sleep(0.05)
    p99 = round(float(np.percentile(values, 99)), 1) if values else None
    return {"probes": len(values), "failures": failures, "p99_ms": p99}


def big_url(server: LiveServer) -> dict[str, Any]:
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def endless() -> None:
        with contextlib.closing(connect(server.http_port)) as sock:
            sock.sendall(b"GET /")
            sent = 0
            while not stop.is_set() and send_quietly(sock, b"a" * 4096):
                sent += 4096
            outcome["bytes_accepted_before_close"] = sent
            outcome["closed_by_server"] = not stop.is_set()

    thread = threading.Thread(target=endless, daemon=True)
    rss_before = rss_mib(server.process.pid)
    thread.start()
    others = _closed_loop(server.http_port, _post("/v2/models/simple/infer", SIMPLE_BODY), 4, 10.0)
    stop.set()
    thread.join(timeout=10)
    return {**outcome, "others_during": others, "rss_mib": [rss_before, rss_mib(server.process.pid)]}


def idle_flood(server: LiveServer) -> dict[str, Any]:
    held: list[socket.socket] = []
    refused = 0
    for _ in range(1_100):
        try:
            held.append(connect(server.http_port, timeout_s=2))
        except OSError:
            refused += 1
    time.sleep(0.5)
    others = _closed_loop(server.http_port, _post("/v2/models/simple/infer", SIMPLE_BODY), 4, 5.0)
    for sock in held:
        sock.close()
    return {"opened": len(held), "refused": refused, "new_clients_during": others}


def _grpc_live_latency(url: str, seconds: float) -> dict[str, Any]:
    client = grpcclient.InferenceServerClient(url)
    values: list[float] = []
    failures = 0
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            client.is_server_ready(client_timeout=5)
            values.append((time.perf_counter() - started) * 1000)
        except Exception:
            failures += 1
        time.sleep(0.05)
    p99 = round(float(np.percentile(values, 99)), 1) if values else None
    return {"probes": len(values), "failures": failures, "p99_ms": p99}


def overload(server: LiveServer) -> dict[str, Any]:
    result: dict[str, Any] = {}
    probes = [
        threading.Thread(
            target=lambda: result.update(
                http_ready=_probe_latency(server.http_port, "/v2/health/ready", 8.0)
            ),
            daemon=True,
        ),
        threading.Thread(
            target=lambda: result.update(grpc_ready=_grpc_live_latency(server.grpc_url, 8.0)), daemon=True
        ),
    ]
    for thread in probes:
        thread.start()
    request = _post("/v2/models/slow/infer", SLOW_BODY)
    # `slow` serves about 100 requests/s: 200 clients x 5/s offer ten times that.
    result["slow_10ms_1000_per_s_offered"] = _closed_loop(server.http_port, request, 200, 10.0, 5.0)
    for thread in probes:
        thread.join(timeout=30)
    return result


def partial_bodies(server: LiveServer) -> dict[str, Any]:
    pid = server.process.pid
    before = settle_rss(pid, 1.0)
    head = b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (60 << 20)
    chunk = b"0" * (1 << 20)
    socks = [connect(server.http_port) for _ in range(20)]

    def send(sock: socket.socket) -> None:
        if send_quietly(sock, head):
            for _ in range(59):
                if not send_quietly(sock, chunk):
                    return

    threads = [threading.Thread(target=send, args=(s,), daemon=True) for s in socks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    peak = rss_mib(pid)
    for sock in socks:
        sock.close()
    return {"rss_mib_before_peak_after_close": [round(before), round(peak), round(settle_rss(pid, 5.0))]}


def pipelining(server: LiveServer) -> dict[str, Any]:
    pid = server.process.pid
    before = settle_rss(pid, 1.0)
    request = _post("/v2/models/big_answer/infer", BIG_ANSWER_REQUEST)
    sock = connect(server.http_port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(5)
    sent = 0
    with contextlib.suppress(OSError):
        for _ in range(100):
            sock.sendall(request)
            sent += 1
    time.sleep(5)
    peak = rss_mib(pid)
    sock.close()
    return {"requests_sent": sent, "rss_mib_before_unread": [round(before), round(peak)]}


def held_open(server: LiveServer, wait_s: float) -> dict[str, Any]:
    """500 idle keep-alive, 200 slowloris and one Content-Length 10^12 socket: how many the server
    still holds after `wait_s` (past the default keep-alive timeout of 75 s)."""
    idle = [connect(server.http_port) for _ in range(500)]
    for sock in idle:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    slow = [connect(server.http_port) for _ in range(200)]
    for sock in slow:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
    huge = connect(server.http_port)
    huge.sendall(b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for sock in slow:
            send_quietly(sock, b"X")
        time.sleep(1.0)

    def still_open(sock: socket.socket) -> bool:
        sock.setblocking(False)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return False
        except BlockingIOError:
            return True
        except OSError:
            return False

    counts = {
        "idle_keep_alive_open": sum(still_open(s) for s in idle),
        "slowloris_open": sum(still_open(s) for s in slow),
        "content_length_1e12_open": still_open(huge),
        "after_s": wait_s,
    }
    for sock in [*idle, *slow, huge]:
        sock.close()
    return counts


def control_plane(server: LiveServer, outside: Path) -> dict[str, Any]:
    client = grpcclient.InferenceServerClient(server.grpc_url)

    def outcome(call: Callable[[], object]) -> str:
        try:
            call()
            return "OK"
        except Exception as exc:
            return f"{getattr(exc, 'status', lambda: '?')()}: {str(exc)[:120]}"

    marker = outside / "1" / "ran"
    results: dict[str, Any] = {}
    results["load ../outside/evil"] = outcome(lambda: client.load_model("../outside/evil"))
    results["load <absolute path>"] = outcome(lambda: client.load_model(str(outside)))
    config = {
        "backend": "python",
        "max_batch_size": 0,
        "default_model_filename": str(outside / "1" / "model.py"),
    }
    results["override absolute default_model_filename"] = outcome(
        lambda: client.load_model("slow", config=json.dumps(config))
    )
    results["outside python file ran"] = marker.exists()
    before = len(client.get_model_repository_index().models)
    for i in range(3_000):
        with contextlib.suppress(Exception):
            client.load_model(f"nope{i}", config="{}" if i % 2 else None)
    index = client.get_model_repository_index()
    results["index entries added by 3,000 unknown loads"] = len(index.models) - before
    results["index answer bytes"] = index.ByteSize()
    results["load of a 10,000-character name"] = outcome(lambda: client.load_model("a" * 10_000))
    results["metadata of a 10,000-character name"] = outcome(lambda: client.get_model_metadata("a" * 10_000))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkout", type=Path, required=True, help="packserve source to run the server from"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--held-open-wait-s", type=float, default=80.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="packserve-probes-"))
    repository = build_hostile_repository(work / "repo")
    outside = work / "outside" / "evil"
    (outside / "1").mkdir(parents=True)
    (outside / "1" / "model.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('ran').write_text('ran')\n"
        "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n"
    )
    os.environ["PYTHONPATH"] = str(args.checkout.resolve())
    args.out = args.out.resolve()
    os.chdir(args.checkout)  # `python -m packserve` puts the working folder first on sys.path
    results: dict[str, Any] = {"checkout": str(args.checkout), "load_average_start": os.getloadavg()}
    server = start_server(repository, work, open_file_soft_limit=1024)
    try:
        for name, probe in [
            ("big_url_10s", big_url),
            ("idle_flood_1100", idle_flood),
            ("overload_10x", overload),
            ("partial_bodies_20x59MiB", partial_bodies),
            ("pipelining_100x4MiB_unread", pipelining),
            ("held_open", lambda s: held_open(s, args.held_open_wait_s)),
        ]:
            print(f"probe {name} ...", flush=True)
            results[name] = probe(server)
            results[name]["server_alive"] = server.process.poll() is None
    finally:
        server.terminate(timeout_s=60)
    explicit = start_server(repository, work, control_mode="explicit", load_models=["simple"])
    try:
        print("probe control_plane ...", flush=True)
        results["control_plane"] = control_plane(explicit, outside)
    finally:
        explicit.terminate(timeout_s=60)
    results["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
