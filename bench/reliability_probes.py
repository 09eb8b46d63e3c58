"""Re-measure issue 10's faulty-model probes against a live `packserve serve`.

    .venv/bin/python bench/reliability_probes.py [--window 3]

One server (--drain-timeout 2) holds `simple` (ONNX) and python models that misbehave on demand
(tests/reliability/faulty_models.py), in-process and with `isolation: process`. For each fault it
records what the faulty model's client gets, whether the server lives, `simple`'s throughput (4
keep-alive HTTP clients, fixed window) and the readiness probe's latency while the fault runs, and, last,
how SIGTERM ends with a hung request in flight. Prints JSON and writes
bench/results/reliability_probes.json with the load average (the box may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from packserve.backends.worker_processes import rss_bytes
from packserve.examples.simple_repository import build_simple_repository
from tests.e2e.e2e_server import LiveServer, start_live_server
from tests.reliability.faulty_models import SPIN_S, TRIGGER, write_faulty_model

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"
ISO = {"isolation": "process"}


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def trigger(server: LiveServer, model: str, timeout_s: float = 120) -> dict[str, Any]:
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [TRIGGER, 0, 0, 0]}]}
    started = time.monotonic()
    try:
        reply = session().post(f"{server.http_base}/v2/models/{model}/infer", json=body, timeout=timeout_s)
        answer: Any = reply.status_code
        text = reply.json().get("error", "")[:160]
    except requests.RequestException as exc:
        answer, text = "no answer", type(exc).__name__
    return {"status": answer, "error": text, "answered_after_s": round(time.monotonic() - started, 2)}


def health_p99_ms(server: LiveServer, count: int = 40) -> float:
    s = session()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        s.get(f"{server.http_base}/v2/health/ready", timeout=30)
        samples.append((time.perf_counter() - started) * 1000)
    return round(sorted(samples)[int(count * 0.99) - 1], 1)


def alive(server: LiveServer) -> bool:
    try:
        return session().get(f"{server.http_base}/v2/health/ready", timeout=5).status_code == 200
    except requests.RequestException:
        return False


SIMPLE_BODY = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": list(range(16))},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
    ]
}


def simple_rate(server: LiveServer, window_s: float, clients: int = 4) -> float:
    """`simple` requests/s over a fixed window from `clients` keep-alive HTTP clients (a fixed
    window, unlike perf_analyzer's stabilising trials, which give up while a fault comes and goes)."""
    done = [0] * clients
    stop_at = time.monotonic() + window_s

    def client(index: int) -> None:
        s = session()
        url = f"{server.http_base}/v2/models/simple/infer"
        while time.monotonic() < stop_at:
            if s.post(url, json=SIMPLE_BODY, timeout=30).status_code == 200:
                done[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return round(sum(done) / window_s, 1)


def while_running(server: LiveServer, model: str, window_s: float) -> dict[str, Any]:
    """Trigger `model` in the background; measure `simple` and health while it misbehaves."""
    outcome: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: outcome.update(trigger(server, model)))
    caller.start()
    time.sleep(0.5)
    measured = {
        "simple_req_per_s": simple_rate(server, window_s),
        "health_p99_ms": health_p99_ms(server),
    }
    caller.join(180)
    return {**measured, "faulty_client_got": outcome, "server_alive": alive(server)}


def main(window_s: float, spin_rounds: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="reliability-probes-"))
    repo = build_simple_repository(work / "models")
    write_faulty_model(repo, "spin_inproc", "spin", execution_timeout_s="8")
    write_faulty_model(repo, "spin_iso", "spin", execution_timeout_s="8", **ISO)
    write_faulty_model(repo, "exit_iso", "exit", **ISO)
    write_faulty_model(repo, "segv_iso", "segv", **ISO)
    write_faulty_model(repo, "hang_inproc", "hang", execution_timeout_s="3")
    write_faulty_model(repo, "hang_iso", "hang", execution_timeout_s="3", **ISO)
    write_faulty_model(repo, "leak_iso", "leak", max_rss_mb="400", **ISO)
    server = start_live_server(repo, work, extra_args=["--drain-timeout", "2"])
    results: dict[str, Any] = {"load_average_start": os.getloadavg()}
    try:
        # A spinning model slows the rest by the GIL (in-process) or by the core it takes
        # (isolated). Paired rounds, since the shared box is noisy; an in-process spinner cannot
        # be stopped, so each round waits for it to end by itself (SPIN_S) before the next.
        rounds: dict[str, list[dict[str, Any]]] = {"baseline": [], "spin_isolated": [], "spin_in_process": []}
        for _ in range(spin_rounds):
            rounds["baseline"].append(
                {
                    "simple_req_per_s": simple_rate(server, window_s),
                    "health_p99_ms": health_p99_ms(server),
                }
            )
            rounds["spin_isolated"].append(while_running(server, "spin_iso", window_s))
            started = time.monotonic()
            rounds["spin_in_process"].append(while_running(server, "spin_inproc", window_s))
            time.sleep(max(0.0, SPIN_S + 1 - (time.monotonic() - started)))
        for name, runs in rounds.items():
            results[name] = {
                "simple_req_per_s_median": statistics.median(r["simple_req_per_s"] for r in runs),
                "health_p99_ms_median": statistics.median(r["health_p99_ms"] for r in runs),
                "rounds": runs,
            }
        for name in ("exit_iso", "segv_iso"):
            results[name] = {"faulty_client_got": trigger(server, name), "server_alive": alive(server)}
        for name in ("hang_inproc", "hang_iso"):
            results[name] = {"faulty_client_got": trigger(server, name)}
        server_rss = rss_bytes(server.process.pid)
        leak = [trigger(server, "leak_iso") for _ in range(40)]
        results["leak_isolated_20MiB_per_call"] = {
            "calls_until_stopped": next((i + 1 for i, r in enumerate(leak) if r["status"] != 200), None),
            "first_failure": next((r for r in leak if r["status"] != 200), None),
            "server_rss_mib_before_after": [
                round(server_rss / 2**20),
                round(rss_bytes(server.process.pid) / 2**20),
            ],
        }
        hung = threading.Thread(target=trigger, args=(server, "hang_iso"))
        hung.start()
        time.sleep(0.5)
        started = time.monotonic()
        code = server.terminate(60)
        results["sigterm_with_hung_request_drain_2s"] = {
            "exit_code": code,
            "exit_after_s": round(time.monotonic() - started, 2),
        }
        hung.join(30)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    results["load_average_end"] = os.getloadavg()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=3.0, help="throughput window, seconds")
    parser.add_argument("--spin-rounds", type=int, default=3)
    arguments = parser.parse_args()
    result = main(arguments.window, arguments.spin_rounds)
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reliability_probes.json").write_text(json.dumps(result, indent=2) + "\n")
