"""What an open web console costs the served throughput.

    .venv/bin/python bench/console_overhead.py [--pairs 20] [--phase-s 3] [--concurrency 4]

Starts packserve on the example repository and keeps perf_analyzer loading the `simple` model over
HTTP the whole time, while a headless Debian chromium has the console open and switches it between
the Live view (it polls GET /v2/models/stats every 1.5 s and redraws its charts) and the Plan view
(no requests, nothing redrawn) every few seconds. The server's own request counter gives the
throughput of each phase. On a machine shared with other work, separate runs differ by far more
than 2%; alternating short phases (ABBA order) under the same load and comparing each pair cancels
most of that drift. The browser runs on the server's machine, so its rendering competes for the CPU
as well.

It then accounts for the cost directly in CPU time, which other load disturbs much less:

    idle        the server's CPU over 10 s with nobody calling it (no console: no work)
    stats       the server's CPU per GET /v2/models/stats, over 500 calls; an open console sends
                one per 1.5 s, so its share of one core is that cost / 1.5 s
    browser     the CPU of the headless chromium showing the Live view for 20 s (its share of one
                core, when it runs on the server's machine)

Prints the phases, the mean paired difference and the accounting, and writes
bench/results/console_overhead.json with the load average next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.http_throughput import MODEL, RESULTS, _free_port, _perf_analyzer, _start_server, _wait_ready  # noqa: E402
from packserve.examples.simple_repository import build_simple_repository  # noqa: E402

CHROMIUM = os.environ.get("PACKSERVE_CHROMIUM", "/usr/bin/chromium")
POLL_S = 1.5  # the console's stats period (console_assets/stats.js)
SETTLE_S = 5.0  # after the browser starts, before measuring: its start-up is not the console's cost


@contextlib.contextmanager
def open_console(port: int) -> Iterator[Any]:
    """A headless chromium showing the Live view, its rows rendered (so polling has started)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/console/#live")
        page.wait_for_selector(f'#live-table tr[data-model="{MODEL}"]', state="attached", timeout=60_000)
        time.sleep(SETTLE_S)
        try:
            yield page
        finally:
            browser.close()


def _cpu_s(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def account(port: int, server: psutil.Process) -> dict[str, float]:
    """The console's cost in CPU time: idle server, one stats call, an open browser."""
    before = _cpu_s([server])
    time.sleep(10.0)
    idle_ms_per_s = 1000.0 * (_cpu_s([server]) - before) / 10.0
    session = requests.Session()
    session.trust_env = False
    url = f"http://127.0.0.1:{port}/v2/models/stats"
    before = _cpu_s([server])
    for _ in range(500):
        session.get(url, timeout=10).raise_for_status()
    stats_ms = 1000.0 * (_cpu_s([server]) - before) / 500
    with open_console(port):
        browser = [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name().lower()]
        before, server_before = _cpu_s(browser), _cpu_s([server])
        time.sleep(20.0)
        browser_ms_per_s = 1000.0 * (_cpu_s(browser) - before) / 20.0
        server_open_ms_per_s = 1000.0 * (_cpu_s([server]) - server_before) / 20.0
    return {
        "idle_server_cpu_ms_per_s": idle_ms_per_s,
        "stats_call_server_cpu_ms": stats_ms,
        "console_server_share_of_one_core_percent": 100.0 * stats_ms / (POLL_S * 1000.0),
        "open_console_idle_server_cpu_ms_per_s": server_open_ms_per_s,
        "browser_cpu_ms_per_s": browser_ms_per_s,
        "browser_share_of_one_core_percent": browser_ms_per_s / 10.0,
    }


def _served(session: requests.Session, port: int) -> int:
    reply = session.get(f"http://127.0.0.1:{port}/v2/models/{MODEL}/stats", timeout=10)
    reply.raise_for_status()
    return int(reply.json()["model_stats"][0]["inference_stats"]["success"]["count"])


def paired(binary: str, port: int, concurrency: int, pairs: int, phase_s: float) -> dict[str, list[float]]:
    """Requests/s of each Live-view phase and each Plan-view phase, under one continuous load."""
    window_ms = int((pairs * 2 * phase_s + 180) * 1000)  # longer than the test: stopped by us
    load = subprocess.Popen(
        [binary, "-m", MODEL, "-u", f"127.0.0.1:{port}", "-i", "http",
         "--concurrency-range", str(concurrency), "--measurement-mode", "time_windows",
         "--measurement-interval", str(window_ms), "--stability-percentage", "1000", "--max-trials", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    session = requests.Session()
    session.trust_env = False
    rates: dict[str, list[float]] = {"live": [], "plan": []}
    try:
        with open_console(port) as page:
            page.evaluate("location.hash = '#plan'")
            time.sleep(phase_s)  # the load reaches its steady state
            for pair in range(pairs):
                for view in ("live", "plan") if pair % 2 == 0 else ("plan", "live"):
                    page.evaluate(f"location.hash = '#{view}'")
                    count, started = _served(session, port), time.monotonic()
                    time.sleep(phase_s)
                    served, elapsed = _served(session, port) - count, time.monotonic() - started
                    rates[view].append(served / elapsed)
                print(
                    f"pair {pair:2d}: live {rates['live'][-1]:8.1f}  plan {rates['plan'][-1]:8.1f} req/s",
                    flush=True,
                )
    finally:
        load.terminate()
        load.wait(timeout=30)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--phase-s", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    binary = _perf_analyzer()
    if binary is None:
        print("perf_analyzer is missing: bash scripts/install_perf_analyzer.sh", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        repository = build_simple_repository(Path(tmp) / "repo")
        port = _free_port()
        server = _start_server(repository, port, Path(tmp) / "server.log")
        process = psutil.Process(server.pid)
        try:
            _wait_ready(port, server)
            load_before = os.getloadavg()
            rates = paired(binary, port, args.concurrency, args.pairs, args.phase_s)
            load_during = os.getloadavg()
            accounting = account(port, process)
        finally:
            server.terminate()
            server.wait(timeout=60)
    differences = [live - plan for live, plan in zip(rates["live"], rates["plan"], strict=True)]
    base = statistics.mean(rates["plan"])
    drop = -100.0 * statistics.mean(differences) / base
    error = 100.0 * statistics.stdev(differences) / len(differences) ** 0.5 / base
    result = {
        "model": MODEL,
        "concurrency": args.concurrency,
        "phase_s": args.phase_s,
        "rates_per_s": rates,
        "mean_plan_view_per_s": base,
        "mean_live_view_per_s": statistics.mean(rates["live"]),
        "drop_percent": drop,
        "drop_standard_error_percent": error,
        "accounting": accounting,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_during": load_during,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(
        f"console idle (Plan view) {base:.1f} req/s, on Live {result['mean_live_view_per_s']:.1f} req/s: "
        f"drop {drop:+.2f}% +- {error:.2f}% (standard error of {len(differences)} pairs)"
    )
    for name, value in accounting.items():
        print(f"{name:45s} {value:9.3f}")
    print(f"load average {load_before[0]:.1f} -> {load_during[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "console_overhead.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
