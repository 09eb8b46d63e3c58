"""Pipeline benchmark (issue 13): one 640x480 JPEG -> decode -> resize 224 and 320 -> normalize ->
mobilenet_v3_small + resnet18 (224) and LR-ASPP MobileNetV3 (320) -> top-1 of each; ONNX Runtime,
random weights, 2 instances per model, dynamic batching max 8 / 5 ms.

    .venv/bin/python -m bench.pipeline_budget [--systems bare,packserve,packserve_noslots,triton]
        [--concurrency 1,8,32] [--seconds 10] [--open-loop-fraction 0.8] [--repeat 1]

Systems, each measured alone (they never share the CPU):
  bare               the raw limit: decode + the three sessions in-process, no server, at each
                     batch size and thread count of --bare-batch-sizes x --bare-workers; best kept
  packserve          `packserve serve` with its defaults (CPU execution-slot budget on)
  packserve_noslots  the same with --cpu-execution-slots 0 (the A/B for the budget)
  triton             the reference Triton 2.51, python-backend steps wrapping ONNX Runtime
Each server gets closed-loop points at every --concurrency, then an open loop at
--open-loop-fraction of the raw limit (of the best served c=32 figure when bare is skipped),
latency from the scheduled send time. Per point: server CPU per request and per-step queue /
compute / batch size from the statistics extension. --repeat N interleaves the server systems N
times (A/B on a busy machine). Writes bench/results/pipeline_budget/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil

from bench.pipeline_budget import repositories
from bench.pipeline_budget.load import closed_loop, open_loop
from bench.suite.server_process import pick_free_ports

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "bench" / "results" / "pipeline_budget"
CACHE = ROOT / "bench" / "results" / "cache" / "pipeline_models"
SYSTEMS = ("bare", "packserve", "packserve_noslots", "triton")
OUTPUTS = [top for _, top in repositories.NETWORKS.values()]


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma list of " + ", ".join(SYSTEMS))
    parser.add_argument("--concurrency", type=_ints, default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per point")
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--open-loop-fraction", type=float, default=0.8, help="0 = no open-loop point")
    parser.add_argument("--open-loop-seconds", type=float, default=15.0)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of the server systems, interleaved")
    parser.add_argument("--bare-batch-sizes", type=_ints, default=[1, 8])
    parser.add_argument("--bare-workers", type=_ints, default=[1, 2])
    parser.add_argument("--server-args", default="", help="extra `packserve serve` arguments")
    parser.add_argument("--tritonserver", type=Path, default=ROOT / ".tools/tritonserver/bin/tritonserver")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.systems = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(args.systems) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
    if args.repeat < 1 or args.seconds <= 0:
        parser.error("--repeat must be >= 1 and --seconds > 0")
    return args


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def test_image() -> bytes:
    """A 640x480 photo-like JPEG (smooth shapes plus texture), quality 90."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    image = np.stack([x / 640 * 255, y / 480 * 255, (x + y) / 1120 * 255], axis=-1)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, 640), rng.uniform(0, 480), rng.uniform(20, 120)
        image[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 12, image.shape)
    ok, encoded = cv2.imencode(
        ".jpg", np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    assert ok
    return encoded.tobytes()


# ---- bare loop -------------------------------------------------------------------------------


def run_bare(args: argparse.Namespace, onnx: dict[str, Path], image: bytes) -> dict[str, Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {
        n: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for n, p in onnx.items()
    }
    mean = np.array(repositories.MEAN, np.float32) * 255
    std = np.array(repositories.STD, np.float32) * 255
    cv2.setNumThreads(1)

    def prepare(rgb: np.ndarray, size: int) -> np.ndarray:
        resized = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
        return ((resized.astype(np.float32) - mean) / std).transpose(2, 0, 1)

    def one_batch(batch: int) -> None:
        inputs: dict[int, list[np.ndarray]] = {224: [], 320: []}
        for _ in range(batch):
            rgb = cv2.cvtColor(
                cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
            )
            for size in inputs:
                inputs[size].append(prepare(rgb, size))
        for name, (size, _) in repositories.NETWORKS.items():
            sessions[name].run(None, {"INPUT": np.stack(inputs[size])})

    points = []
    for batch in args.bare_batch_sizes:
        for workers in args.bare_workers:
            one_batch(batch)  # warm
            done = [0] * workers
            end = time.monotonic() + args.seconds

            def loop(index: int, batch: int = batch, done: list[int] = done, end: float = end) -> None:
                while time.monotonic() < end:
                    one_batch(batch)
                    done[index] += batch

            started = time.monotonic()
            threads = [threading.Thread(target=loop, args=(i,)) for i in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            rate = sum(done) / (time.monotonic() - started)
            points.append(
                {"batch": batch, "workers": workers, "images_per_s": round(rate, 2), "load": load_average()}
            )
            print(
                f"bare batch {batch} workers {workers}: {rate:.2f} images/s (load {load_average()})",
                flush=True,
            )
    best = max(points, key=lambda p: p["images_per_s"])
    return {"points": points, "best": best}


# ---- servers ---------------------------------------------------------------------------------


def start_server(system: str, args: argparse.Namespace, repos: dict[str, Path], log: Path) -> tuple[Any, str]:
    http, grpc, metrics = pick_free_ports(3)
    env = dict(os.environ)
    if system == "triton":
        command = [
            str(args.tritonserver), "--model-repository", str(repos["triton"]),
            "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
            "--backend-directory", str(args.tritonserver.parent.parent / "backends"),
            # Batches of 8 images at 320x320 FP32 are 10 MB: with the default 1 MB shared-memory
            # pool (grown 1 MB at a time) the python backend crashed at c=32 (lock_exception).
            "--backend-config", "python,shm-default-byte-size=67108864",
            "--backend-config", "python,shm-growth-byte-size=16777216",
        ]  # fmt: skip
    else:
        command = [
            sys.executable, "-m", "packserve", "serve", "--model-repository", str(repos["packserve"]),
            "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
            *args.server_args.split(),
        ]  # fmt: skip
        if system == "packserve_noslots":
            command += ["--cpu-execution-slots", "0"]
    handle = log.open("wb")
    process = subprocess.Popen(
        command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    )
    url = f"127.0.0.1:{http}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{system} exited before ready:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(
                f"http://{url}/v2/models/{repositories.ENSEMBLE}/ready", timeout=2
            ) as r:
                if r.status == 200:
                    return process, url
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"{system} not ready after 600 s:\n{log.read_text()[-3000:]}")


def stop_server(process: Any) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_seconds(pid: int) -> float:
    """CPU time of the server and its child processes (Triton's python stubs)."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


class RunnableSampler:
    """Samples, every 50 ms, how many threads of the server's process tree are runnable (state R
    in /proc): against the core count, it shows whether the server oversubscribes the CPU or
    leaves it idle."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RunnableSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            pids = [self._pid, *(c.pid for c in psutil.Process(self._pid).children(recursive=True))]
        except psutil.NoSuchProcess:
            return
        while not self._stop.wait(0.05):
            runnable = 0
            for pid in pids:
                try:
                    for task in os.listdir(f"/proc/{pid}/task"):
                        with open(f"/proc/{pid}/task/{task}/stat") as stat:
                            runnable += stat.read().rsplit(")", 1)[1].split()[0] == "R"
                except OSError:
                    continue
            self._samples.append(runnable)

    def summary(self) -> dict[str, float]:
        samples = self._samples or [0]
        return {"mean": round(sum(samples) / len(samples), 2), "p90": float(np.percentile(samples, 90))}


def model_stats(url: str) -> dict[str, dict[str, float]]:
    with urllib.request.urlopen(f"http://{url}/v2/models/stats", timeout=30) as reply:
        body = json.load(reply)
    stats = {}
    for entry in body["model_stats"]:
        inference = entry["inference_stats"]
        stats[entry["name"]] = {
            "inferences": entry["inference_count"],
            "executions": entry["execution_count"],
            "queue_ns": inference["queue"]["ns"],
            "compute_ns": sum(
                inference[k]["ns"] for k in ("compute_input", "compute_infer", "compute_output")
            ),
            "requests": inference["success"]["count"],
        }
    return stats


def step_table(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Per model: average batch formed, queue ms per request, compute ms per execution."""
    table = {}
    for name, now in after.items():
        old = before.get(name, {k: 0 for k in now})
        requests = now["requests"] - old["requests"]
        executions = now["executions"] - old["executions"]
        if not requests:
            continue
        table[name] = {
            "avg_batch": round((now["inferences"] - old["inferences"]) / max(1, executions), 2),
            "queue_ms_per_request": round((now["queue_ns"] - old["queue_ns"]) / requests / 1e6, 1),
            "compute_ms_per_request": round((now["compute_ns"] - old["compute_ns"]) / requests / 1e6, 1),
        }
    return table


def measure_server(
    system: str,
    args: argparse.Namespace,
    repos: dict[str, Path],
    image: bytes,
    open_rate: float | None,
    tag: str,
) -> dict[str, Any]:
    """Closed-loop points, then the open loop at `open_rate` (None: at --open-loop-fraction of this
    run's best closed-loop figure)."""
    process, url = start_server(system, args, repos, args.out / f"{system}{tag}.log")
    points: list[dict[str, Any]] = []
    try:
        plan: list[tuple[str, float]] = [("closed", c) for c in args.concurrency]
        if args.open_loop_fraction > 0:
            plan.append(("open", open_rate or 0.0))
        for mode, value in plan:
            if mode == "open" and not value:
                value = args.open_loop_fraction * max(p["requests_per_s"] for p in points)
            before, cpu_before = model_stats(url), cpu_seconds(process.pid)
            load = load_average()
            with RunnableSampler(process.pid) as runnable:
                if mode == "closed":
                    result = closed_loop(
                        url, repositories.ENSEMBLE, OUTPUTS, image, int(value), args.warmup_s, args.seconds
                    )
                else:
                    result = open_loop(
                        url, repositories.ENSEMBLE, OUTPUTS, image, value, args.open_loop_seconds
                    )
            cpu = cpu_seconds(process.pid) - cpu_before
            summary = result.summary()
            window = args.warmup_s + args.seconds if mode == "closed" else args.open_loop_seconds
            served = max(1, result.answered)
            point = {
                "system": system, "mode": mode, "concurrency" if mode == "closed" else "rate": value,
                **summary, "load_before": load, "load_after": load_average(),
                "server_cpu_ms_per_request": round(cpu * 1000 / served, 1),
                "server_cpu_percent": round(cpu / window * 100, 1),
                "server_runnable_threads": runnable.summary(),
                "steps": step_table(before, model_stats(url)),
                "first_error": result.errors[0] if result.errors else None,
            }  # fmt: skip
            points.append(point)
            label = f"c={int(value)}" if mode == "closed" else f"open {value:.1f}/s"
            print(
                f"{system}{tag} {label}: {summary['requests_per_s']} req/s p50 {summary['p50_ms']} ms "
                f"p99 {summary['p99_ms']} ms, server CPU {point['server_cpu_percent']}% "
                f"runnable threads {point['server_runnable_threads']['mean']} "
                f"CPU/request {point['server_cpu_ms_per_request']} ms "
                f"(load {point['load_before']})",
                flush=True,
            )
    finally:
        stop_server(process)
    return {"system": system, "round": tag, "points": points}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from bench.pipeline_budget.models import export_models  # torch: only when running

    onnx = export_models(CACHE)
    image = test_image()
    repos = {
        "packserve": repositories.write_packserve_repository(args.out / "repository_packserve", onnx),
        "triton": repositories.write_triton_repository(args.out / "repository_triton", onnx),
    }
    report: dict[str, Any] = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "cpus": os.cpu_count(),
        "image_bytes": len(image),
        "load_at_start": load_average(),
        "runs": [],
    }
    if "bare" in args.systems:
        report["bare"] = run_bare(args, onnx, image)
    open_rate = None
    if args.open_loop_fraction > 0 and "bare" in report:
        open_rate = args.open_loop_fraction * report["bare"]["best"]["images_per_s"]
    servers = [s for s in args.systems if s != "bare"]
    for round_index in range(args.repeat):
        for system in servers:
            tag = f"_r{round_index}" if args.repeat > 1 else ""
            try:
                run = measure_server(system, args, repos, image, open_rate, tag)
            except (OSError, RuntimeError) as exc:  # a server that died: recorded, the run goes on
                print(f"{system}{tag} failed: {exc}", flush=True)
                report.setdefault("failures", []).append(
                    {"system": system, "round": tag, "error": str(exc)[-2000:]}
                )
                continue
            report["runs"].append(run)
            # Every system gets the same open-loop rate: the raw limit's, else the first run's.
            open_rate = open_rate or next((p["rate"] for p in run["points"] if p["mode"] == "open"), None)
            (args.out / "report.json").write_text(json.dumps(report, indent=1))
    report["load_at_end"] = load_average()
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"report: {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
