"""What an open web console costs the served throughput.

    .venv/bin/python bench/console_overhead.py [--rounds 4] [--window-s 5] [--concurrency 4]

Starts packserve on the example repository and measures the `simple` model's HTTP throughput with
perf_analyzer (three fixed windows per run), rotating through three modes:

    closed   nobody has the console open
    open     a headless Debian chromium shows the console's Live view (it polls
             GET /v2/models/stats every 1.5 s and redraws its charts) on this same machine, so its
             rendering competes with the server for the CPU too
    polled   the console's requests alone (GET /v2/models/stats every 1.5 s from a thread): what
             the server pays for a console open on someone else's machine

For each run it also records the server process's CPU seconds per 1000 requests. On a shared,
busy machine the run-to-run noise of throughput is far above 2%, so it then accounts for the cost
directly, in CPU time, which other load disturbs much less:

    idle        the server's CPU over 10 s with nobody calling it (no console: no work)
    stats       the server's CPU per GET /v2/models/stats, over 500 calls; an open console sends
                one per 1.5 s, so its share of one core is that cost / 1.5 s
    browser     the CPU of a headless chromium showing the Live view for 20 s (its share of one
                core, when it runs on the server's machine)

Prints each run, the medians and the accounting, and writes bench/results/console_overhead.json
with the load average next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
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
MODES = ("closed", "open", "polled")


def measure(binary: str, port: int, concurrency: int, window_s: float) -> float:
    """Requests/s over three fixed windows (no stability search: every run takes the same time)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.csv"
        command = [
            binary, "-m", MODEL, "-u", f"127.0.0.1:{port}", "-i", "http",
            "--concurrency-range", str(concurrency),
            "--measurement-mode", "time_windows", "--measurement-interval", str(int(window_s * 1000)),
            "--stability-percentage", "1000", "--max-trials", "3", "-f", str(report),
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=window_s * 10 + 60)
        row = next(csv.DictReader(io.StringIO(report.read_text())))
    return float(row["Inferences/Second"])


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


@contextlib.contextmanager
def poll_stats(port: int) -> Iterator[None]:
    """The requests an open console sends, without a browser."""
    stop = threading.Event()

    def run() -> None:
        session = requests.Session()
        session.trust_env = False
        while not stop.wait(POLL_S):
            session.get(f"http://127.0.0.1:{port}/v2/models/stats", timeout=10).raise_for_status()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


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


def _context(mode: str, port: int) -> contextlib.AbstractContextManager[Any]:
    if mode == "open":
        return open_console(port)
    if mode == "polled":
        return poll_stats(port)
    return contextlib.nullcontext()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--window-s", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--accounting-only", action="store_true", help="skip the throughput runs")
    args = parser.parse_args()
    binary = _perf_analyzer()
    if binary is None:
        print("perf_analyzer is missing: bash scripts/install_perf_analyzer.sh", file=sys.stderr)
        return 2
    runs: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu_ms: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        repository = build_simple_repository(Path(tmp) / "repo")
        port = _free_port()
        server = _start_server(repository, port, Path(tmp) / "server.log")
        process = psutil.Process(server.pid)
        try:
            _wait_ready(port, server)
            measure(binary, port, args.concurrency, 1.0)  # warm-up
            load_before = os.getloadavg()
            for round_number in range(0 if args.accounting_only else args.rounds):
                # Rotate the order, so a drift in the machine's other load hits every mode alike.
                shift = round_number % len(MODES)
                for mode in MODES[shift:] + MODES[:shift]:
                    with _context(mode, port):
                        cpu_before = sum(process.cpu_times()[:2])
                        started = time.monotonic()
                        rate = measure(binary, port, args.concurrency, args.window_s)
                        elapsed = time.monotonic() - started
                        cpu = sum(process.cpu_times()[:2]) - cpu_before
                    # perf_analyzer's own warm-up is in `elapsed` too: count requests as rate x time.
                    per_1000 = 1000.0 * cpu / max(rate * elapsed, 1.0) * 1000.0
                    runs[mode].append(rate)
                    cpu_ms[mode].append(per_1000)
                    print(
                        f"round {round_number} console {mode:6s} {rate:9.1f} req/s  "
                        f"server CPU {per_1000:7.1f} ms per 1000 requests",
                        flush=True,
                    )
            accounting = account(port, process)
            load_after = os.getloadavg()
        finally:
            server.terminate()
            server.wait(timeout=60)
    measured = [mode for mode in MODES if runs[mode]]
    medians = {mode: statistics.median(runs[mode]) for mode in measured}
    cpu_medians = {mode: statistics.median(cpu_ms[mode]) for mode in measured}
    drops = {mode: 100.0 * (medians["closed"] - medians[mode]) / medians["closed"] for mode in measured}
    result = {
        "model": MODEL,
        "concurrency": args.concurrency,
        "window_s": args.window_s,
        "runs_per_s": runs,
        "server_cpu_ms_per_1000_requests": cpu_ms,
        "median_per_s": medians,
        "median_server_cpu_ms_per_1000_requests": cpu_medians,
        "drop_percent": drops,
        "accounting": accounting,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for mode in measured:
        print(
            f"median {mode:6s} {medians[mode]:9.1f} req/s ({drops[mode]:+.2f}% drop), "
            f"server CPU {cpu_medians[mode]:.1f} ms per 1000 requests"
        )
    for name, value in accounting.items():
        print(f"{name:45s} {value:9.3f}")
    print(f"load average {load_before[0]:.1f} -> {load_after[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "console_overhead.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
