"""Re-measure issue 10's faulty-model probes against a live `packserve serve`.

    .venv/bin/python bench/reliability_probes.py [--window 3]

One server (--drain-timeout 2) holds `simple` (ONNX) and python models that misbehave on demand
(tests/reliability/faulty_models.py), in-process and with `isolation: process`. For each fault it
records what the faulty model's client gets, whether the server lives, `simple`'s throughput with
perf_analyzer (concurrency 4) and the readiness probe's latency while the fault runs, and, last,
how SIGTERM ends with a hung request in flight. Prints JSON and writes
bench/results/reliability_probes.json with the load average (the box may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from bench.http_throughput import _perf_analyzer, run_perf_analyzer
from packserve.backends.worker_processes import rss_bytes
from packserve.examples.simple_repository import build_simple_repository
from tests.e2e.e2e_server import LiveServer, start_live_server
from tests.reliability.faulty_models import TRIGGER, write_faulty_model

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


def simple_rate(binary: str, server: LiveServer, window_s: float) -> float:
    return round(run_perf_analyzer(binary, server.http_port, 4, window_s)["requests_per_s"], 1)


def while_running(server: LiveServer, model: str, binary: str, window_s: float) -> dict[str, Any]:
    """Trigger `model` in the background; measure `simple` and health while it misbehaves."""
    outcome: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: outcome.update(trigger(server, model)))
    caller.start()
    time.sleep(0.5)
    measured = {
        "simple_req_per_s": simple_rate(binary, server, window_s),
        "health_p99_ms": health_p99_ms(server),
    }
    caller.join(180)
    return {**measured, "faulty_client_got": outcome, "server_alive": alive(server)}


def main(window_s: float) -> dict[str, Any]:
    binary = _perf_analyzer()
    if binary is None:
        raise SystemExit("perf_analyzer is needed (scripts/install_perf_analyzer.sh)")
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
        results["baseline"] = {
            "simple_req_per_s": simple_rate(binary, server, window_s),
            "health_p99_ms": health_p99_ms(server),
        }
        results["spin_in_process"] = while_running(server, "spin_inproc", binary, window_s)
        results["spin_isolated"] = while_running(server, "spin_iso", binary, window_s)
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
        hung = threading.Thread(target=trigger, args=(server, "spin_iso"))
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
    parser.add_argument("--window", type=float, default=3.0, help="perf_analyzer window, seconds")
    result = main(parser.parse_args().window)
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reliability_probes.json").write_text(json.dumps(result, indent=2) + "\n")
