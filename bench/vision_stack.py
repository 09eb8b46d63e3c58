"""Benchmark of the `vision_stack` demo pipeline against the two layouts it is meant to beat.

    .venv/bin/python -m bench.vision_stack [--repository DIR] [--concurrency 1,8,32] ...

1. served     `packserve serve` with the whole repository; perf_analyzer sends one real JPEG per
              request (`--input-data` JSON, the image as `b64` BYTES content) over HTTP; per-model
              queue/compute from `GET /v2/models/stats` before and after each concurrency.
2. bare loop  the same steps in-process, no server (`vision_stack_baseline.bare_loop`), at each
              batch size and worker count asked for; the best is the reference (target: served
              >= 0.85x of it).
3. per model  one server process per model, the teams' glue in the client
              (`vision_stack_baseline.per_model`), same concurrencies (target: served faster).

Writes bench/results/vision_stack/{report.json, vision_stack.png, perf_analyzer logs} and prints
rich tables. Phases run one after another so they never share the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.suite.perf_analyzer import find_binary, parse_csv
from bench.suite.server_process import ServerPorts, ServerProcess, pick_free_ports
from bench.vision_stack_baseline import per_model
from bench.vision_stack_baseline.bare_loop import bare_loop
from bench.vision_stack_baseline.pipeline import ensemble_models, load_backends
from bench.vision_stack_baseline.results import (
    BenchReport,
    LoadPoint,
    model_stat_deltas,
    percentile_ms,
    perf_analyzer_input_data,
    stats_table,
    throughput_table,
    write_json,
    write_plot,
)
from packserve.demo import samples
from packserve.demo.build import ENSEMBLE, build_vision_stack
from packserve.errors import UnavailableError

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "vision_stack"
# Wide enough for the tables when the output goes to a log file rather than a terminal.
console = Console(width=None if sys.stdout.isatty() else 130)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repository", type=Path, help="built demo repository (default: build one in a temp dir)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument("--concurrency", type=_ints, default=[1, 8, 32], help="comma list")
    parser.add_argument("--measurement-ms", type=int, default=10000, help="perf_analyzer window")
    # The machine is shared: by default any three consecutive windows count as stable, so
    # perf_analyzer reports after the third instead of failing for want of two that agree in 10%.
    parser.add_argument(
        "--stability", type=float, default=1000.0, help="perf_analyzer --stability-percentage"
    )
    parser.add_argument("--max-trials", type=int, default=3, help="perf_analyzer --max-trials")
    parser.add_argument("--duration-s", type=float, default=20.0, help="per-model and bare-loop window")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="per-model warm-up before the window")
    parser.add_argument("--bare-batch-sizes", type=_ints, default=[1, 8], help="comma list")
    parser.add_argument("--bare-workers", type=_ints, default=[1, 2], help="comma list of thread counts")
    parser.add_argument("--skip", default="", help="comma list of phases to skip: served,bare,per_model")
    parser.add_argument("--perf-analyzer", type=Path, help="perf_analyzer binary (default: .tools/bin)")
    parser.add_argument(
        "--server-args", default="", help="more `packserve serve` flags, e.g. '--inline-execution-us 0'"
    )
    return parser.parse_args(argv)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def model_stats(http_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{http_url}/v2/models/stats", timeout=30) as reply:
        body: dict[str, Any] = json.load(reply)
    return body


def run_served(args: argparse.Namespace, repository: Path, image: bytes, report: BenchReport) -> None:
    binary = find_binary(args.perf_analyzer)
    work = args.out / "served"
    work.mkdir(parents=True, exist_ok=True)
    input_path = work / "input_data.json"
    input_path.write_text(json.dumps(perf_analyzer_input_data("IMAGE", image, [1, 1])))
    models = sorted(p.name for p in repository.iterdir() if (p / "config.pbtxt").is_file())
    http, grpc, metrics = pick_free_ports(3)
    server = ServerProcess(
        repository,
        ServerPorts(http, grpc, metrics),
        work / "server.log",
        models,
        shlex.split(args.server_args),
    )
    server.start([ENSEMBLE], timeout_s=240.0)
    try:
        for concurrency in args.concurrency:
            before = model_stats(server.http_url)
            point = perf_analyzer_point(args, binary, server.http_url, input_path, concurrency, work)
            stats = model_stat_deltas(before, model_stats(server.http_url))
            report.served_stats[concurrency] = stats
            if point is not None:
                report.points.append(point)
            else:
                report.notes.append(f"served c={concurrency}: perf_analyzer gave no stable figure")
            if not report.verified:
                report.verified = decode_evidence(stats)
    finally:
        server.stop()


def perf_analyzer_point(
    args: argparse.Namespace, binary: Path, url: str, input_path: Path, concurrency: int, work: Path
) -> LoadPoint | None:
    csv_path = work / f"c{concurrency}.csv"
    csv_path.unlink(missing_ok=True)
    command = [
        str(binary), "-m", ENSEMBLE, "-u", url, "-i", "http",
        "--input-data", str(input_path),
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-interval", str(args.measurement_ms),
        "--stability-percentage", str(args.stability),
        "--max-trials", str(args.max_trials),
        "--input-tensor-format", "binary", "--output-tensor-format", "binary",
        "-f", str(csv_path),
    ]  # fmt: skip
    timeout_s = 120 + args.measurement_ms / 1000 * (args.max_trials + 2) * 2
    console.print(f"[bold]served[/] c={concurrency}: {' '.join(command[1:])}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired:
        output = f"timed out after {timeout_s:.0f} s"
    (work / f"c{concurrency}.log").write_text(" ".join(command) + "\n\n" + output)
    if not csv_path.is_file():
        return None
    rows = parse_csv(csv_path.read_text())
    if not rows:
        return None
    row = rows[0]
    return LoadPoint(
        "served", concurrency, row["Inferences/Second"], row["p50 latency"] / 1000, row["p99 latency"] / 1000
    )


def decode_evidence(stats: list[Any]) -> dict[str, Any]:
    """Proof the server decoded the real JPEG: the astronaut photo holds one face, so O-Net (run
    only on detected faces) gets one row per image; random bytes would fail to decode."""
    by_name = {s.model: s for s in stats}
    decode, onet = by_name.get("vision_preprocess"), by_name.get("onet")
    images = decode.requests if decode else 0
    face_rows = onet.requests if onet else 0
    return {
        "decoded_images": images,
        "onet_face_crops": face_rows,
        "faces_per_image": face_rows / images if images else 0.0,
        "jpeg_decoded": bool(images) and face_rows == images,
    }


def run_bare(args: argparse.Namespace, repository: Path, image: bytes, report: BenchReport) -> None:
    ensemble, specs = ensemble_models(repository, ENSEMBLE)
    backends = load_backends(repository, specs)
    try:
        for workers in args.bare_workers:
            for batch_size in args.bare_batch_sizes:
                point = bare_loop(ensemble, specs, backends, [image], batch_size, workers, args.duration_s)
                console.print(
                    f"[bold]bare loop[/] batch {batch_size} x{workers}: {point.images_per_s:.2f} images/s"
                )
                report.bare_loop.append(
                    {"batch_size": batch_size, "workers": workers, "images_per_s": point.images_per_s}
                )
    finally:
        for backend in backends.values():
            backend.model.close()


def run_per_model(args: argparse.Namespace, repository: Path, image: bytes, report: BenchReport) -> None:
    ensemble, specs = ensemble_models(repository, ENSEMBLE)
    served = per_model.served_models(specs)
    local = per_model.local_backends_for_clients(repository, specs)
    work = args.out / "per_model"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vision_stack_per_model_") as root:
        repositories = per_model.single_model_repositories(repository, served, Path(root))
        with per_model.model_servers(repositories, work) as urls:
            workers = [
                per_model.team_clients(ensemble, specs, local, urls, f"w{i}")
                for i in range(max(args.concurrency))
            ]
            try:
                for concurrency in args.concurrency:
                    result = per_model.closed_loop(
                        workers[:concurrency], image, args.warmup_s, args.duration_s
                    )
                    point = LoadPoint(
                        "per_model",
                        concurrency,
                        result.completed / result.seconds,
                        percentile_ms(result.latencies_s, 50),
                        percentile_ms(result.latencies_s, 99),
                        result.failed,
                    )
                    console.print(f"[bold]per model[/] c={concurrency}: {point.images_per_s:.2f} images/s")
                    report.points.append(point)
            finally:
                for clients in workers:
                    clients.close()
    for backend in local.values():
        backend.model.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    image = samples.encode(samples.photo("astronaut"), "JPEG")
    report = BenchReport(machine_load=f"before: {uptime()}", image_bytes=len(image))
    with tempfile.TemporaryDirectory(prefix="vision_stack_repo_") as scratch:
        repository = args.repository or build_vision_stack(Path(scratch) / "repo", progress=False)
        phases = (("served", run_served), ("bare", run_bare), ("per_model", run_per_model))
        for name, phase in phases:
            if name in skip:
                continue
            started = time.monotonic()
            report.machine_load += f"; {name} starts at 1-min load {os.getloadavg()[0]:.2f}"
            try:
                phase(args, repository, image, report)
            except UnavailableError as exc:
                report.notes.append(f"{name}: {exc}")
                console.print(f"[red]{name} failed:[/] {exc}")
            console.print(f"{name} took {time.monotonic() - started:.0f} s")
    report.machine_load += f"; after: {uptime()}"
    json_path = write_json(report, args.out / "report.json")
    plot_path = write_plot(report, args.out / "vision_stack.png")
    console.print(throughput_table(report))
    for concurrency, stats in sorted(report.served_stats.items()):
        console.print(stats_table(concurrency, stats))
    console.print(f"JPEG decoded by the server: {report.verified}")
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"machine load {report.machine_load}\nwrote {json_path} and {plot_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
