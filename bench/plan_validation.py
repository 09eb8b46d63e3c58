"""Does the capacity planner predict what the server then does? The whole loop on this machine.

build the demo repository -> `packserve profile` (CPU, the sample photo) -> `packserve plan` at a
target load -> apply the plan's config patch to a copy of the repository -> `packserve serve` it ->
perf_analyzer at the planned per-pod load (Poisson arrivals) and at saturation (closed loop) ->
compare with the plan's predicted p99 (its simulation at that load) and max throughput per pod.
The p99 at the planned load comes with 95% bootstrap intervals: for the measurement, from its
per-request latencies (perf_analyzer's profile export); for the prediction, the range a run of the
same number of requests would show if the simulated distribution were the truth.

    .venv/bin/python -m bench.plan_validation [--load 1.5/s --p99 1s --out bench/results/plan_validation]

The server's own CPU time per request is measured too: it does not depend on what else runs on the
machine, so it separates a wrong model (CPU per request off) from contention (others' load).
Takes about 9-10 minutes on 2 cores (600 requests at 1.5/s are 400 s of it).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.suite.perf_analyzer import find_binary
from bench.suite.server_process import ServerPorts, ServerProcess, pick_free_ports
from bench.vision_stack_baseline.results import perf_analyzer_input_data
from packserve.demo import samples
from packserve.demo.build import ENSEMBLE, build_vision_stack
from packserve.errors import UnavailableError
from packserve.planning.capacity.plan_check import plan_pipelines, saturation_throughput, sim_pods
from packserve.planning.capacity.planner import PlanOptions
from packserve.planning.capacity.simulator import SimOptions, simulate
from packserve.planning.capacity.stats import PercentileEstimate, percentile_ci, run_percentile_range
from packserve.planning.commands import PlanCommand, ProfileCommand, plan_command, profile_command
from packserve.planning.formats.config_patch import apply_to_repository
from packserve.planning.formats.plan_schema import Plan
from packserve.planning.formats.profile_schema import Profile
from packserve.planning.formats.units import parse_duration_ms, parse_int_list, parse_load, parse_memory_bytes
from packserve.planning.profiling.profiler import ProfileOptions

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "plan_validation"
TOLERANCE = 0.15
# Simulated seconds for the p99 predictions here: thousands of requests at a few per second, so the
# predicted p99 is not itself a noisy figure.
SIMULATED_S = 2400.0


@dataclass
class Measured:
    label: str
    command: list[str]
    requests_per_s: float = 0.0
    requests: int = 0  # answered requests in perf_analyzer's profile export (warm-up included)
    p50_ms: float = 0.0
    p99_ms: float = 0.0  # from the per-request latencies
    p99_ci_ms: dict[str, float] = field(default_factory=dict)  # 95% bootstrap interval
    perf_analyzer_p99_ms: float = 0.0  # perf_analyzer's own summary figure, for reference
    server_cpu_ms_per_request: float = 0.0
    # Cores the server used on average during the run, and cores every other process used: on a
    # shared machine the second is what the server could not have.
    server_cores: float = 0.0
    other_cores: float = 0.0
    seconds: float = 0.0
    load_average: list[float] = field(default_factory=list)  # 1-minute, before and after


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--load", default="1.5/s", help="average load to plan for (peak factor 1)")
    parser.add_argument("--p99", default="1s", help="end-to-end p99 target")
    parser.add_argument("--memory", default="8GiB", help="memory of one pod")
    parser.add_argument("--batch-sizes", default="1,2")
    parser.add_argument("--instances", default="1,2")
    parser.add_argument("--profile-requests", type=int, default=20)
    parser.add_argument(
        "--planned-requests",
        type=int,
        default=600,
        help="requests at the planned load: a p99 of N requests rests on its N/100 slowest",
    )
    parser.add_argument(
        "--served-requests",
        type=int,
        default=60,
        help="requests the profiler serves the pipeline over HTTP for its serving overhead",
    )
    parser.add_argument("--saturation-concurrency", type=int, default=8)
    parser.add_argument("--saturation-requests", type=int, default=120)
    parser.add_argument("--reuse-profile", action="store_true", help="keep an existing profile.json")
    parser.add_argument(
        "--quiet-load",
        type=float,
        default=1.0,
        help="before each measurement, wait (up to --quiet-wait s) for the 1-minute load average to drop "
        "below this: the plan assumes the pod's cores are its own",
    )
    parser.add_argument("--quiet-wait", type=float, default=180.0)
    parser.add_argument("--perf-analyzer", type=Path, default=None)
    fleet = parser.add_argument_group(
        "fleet (--fleet): several pinned pods behind nginx, bench/plan_fleet.py"
    )
    fleet.add_argument("--fleet", action="store_true", help="validate a multi-pod plan behind nginx instead")
    fleet.add_argument(
        "--fleet-profile", default=None, help="profile to plan from (default OUT/profile.json)"
    )
    fleet.add_argument("--fleet-load", default="5/s", help="load to plan for; must need 2+ one-core pods")
    fleet.add_argument(
        "--fleet-rate-factors", type=lambda t: [float(x) for x in t.split(",")], default=[0.5, 1.0, 1.3]
    )
    fleet.add_argument("--fleet-requests", type=int, default=200, help="requests per rate point")
    fleet.add_argument("--repeats", type=int, default=2, help="runs per point, for a range")
    fleet.add_argument("--nginx", default="/usr/sbin/nginx")
    return parser.parse_args(argv)


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message} (load average {os.getloadavg()[0]:.2f})", flush=True)


def profile_and_plan(args: argparse.Namespace, repository: Path, image_path: Path) -> tuple[Any, Any]:
    profile_path = args.out / "profile.json"
    if not (args.reuse_profile and profile_path.is_file()):
        wait_for_quiet(args.quiet_load, args.quiet_wait)
        step("profiling every model the pipeline needs on the CPU")
        options = ProfileOptions(
            model_repository=repository,
            models=(ENSEMBLE,),  # the pipeline and every model it calls, nothing else
            batch_sizes=parse_int_list(args.batch_sizes, "--batch-sizes"),
            instances=parse_int_list(args.instances, "--instances"),
            requests_per_point=args.profile_requests,
            sample_image=image_path,
            served_requests=args.served_requests,
        )
        profile_command(ProfileCommand(options, profile_path))
    step(f"planning {args.load} at p99 {args.p99}")
    plan_options = PlanOptions(
        requests_per_s=parse_load(args.load),
        p99_ms=parse_duration_ms(args.p99),
        memory_bytes=parse_memory_bytes(args.memory),
        peak_factor=1.0,
        mix={ENSEMBLE: 1.0},
    )
    outcome = plan_command(PlanCommand(profile_path, plan_options, args.out / "plan"))
    return outcome, profile_path


def poisson_intervals(path: Path, rate: float, count: int, seed: int = 11) -> Path:
    """Exponential gaps (microseconds, one a line) with mean 1 / rate: a Poisson schedule."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1e6 / rate, size=count)
    gaps *= 1e6 / rate / gaps.mean()  # exactly the planned mean rate over the run
    path.write_text("".join(f"{max(1, round(g))}\n" for g in gaps))
    return path


def wait_for_quiet(threshold: float, max_wait_s: float) -> None:
    """Other engineers share this machine; give their runs a chance to finish before measuring."""
    deadline = time.monotonic() + max_wait_s
    while os.getloadavg()[0] > threshold and time.monotonic() < deadline:
        time.sleep(5)


def perf_analyzer(
    binary: Path, url: str, input_path: Path, mode: list[str], count: int, work: Path, label: str
) -> Measured:
    csv_path = work / f"{label}.csv"
    csv_path.unlink(missing_ok=True)
    export_path = work / f"{label}.export.json"
    export_path.unlink(missing_ok=True)
    command = [
        str(binary), "-m", ENSEMBLE, "-u", url, "-i", "http",
        "--input-data", str(input_path),
        *mode,
        "--request-count", str(count),
        "--input-tensor-format", "binary", "--output-tensor-format", "binary",
        "-f", str(csv_path),
        "--profile-export-file", str(export_path),
    ]  # fmt: skip
    server = psutil.Process(os.getpid()).children()[0]  # the server is this script's only child
    measured = Measured(label, command, load_average=[os.getloadavg()[0]])
    server_before, machine_before = _busy_s(server), _machine_busy_s()
    started = time.monotonic()
    step(f"perf_analyzer {label}: {' '.join(command[1:])}")
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    measured.seconds = time.monotonic() - started
    server_s, machine_s = _busy_s(server) - server_before, _machine_busy_s() - machine_before
    (work / f"{label}.log").write_text(" ".join(command) + "\n\n" + done.stdout + done.stderr)
    if done.returncode != 0 or not csv_path.is_file():
        raise UnavailableError(f"perf_analyzer {label} exited {done.returncode}: {done.stderr[-800:]}")
    row = _first_row(csv_path.read_text())
    measured.requests_per_s = row["Inferences/Second"]
    measured.perf_analyzer_p99_ms = row["p99 latency"] / 1000
    latencies = _export_latencies_ms(export_path)
    # The export repeats every request's tensors; keep only the latencies.
    export_path.unlink()
    (work / f"{label}.latencies_ms.json").write_text(json.dumps([round(v, 3) for v in latencies]))
    measured.requests = len(latencies)
    measured.p50_ms = float(np.percentile(latencies, 50))
    p99 = percentile_ci(latencies, 99)
    measured.p99_ms = p99.value
    measured.p99_ci_ms = {"low": p99.low, "high": p99.high}
    # Every request perf_analyzer sent (its warm-up ones too) cost the server CPU.
    measured.server_cpu_ms_per_request = server_s * 1000 / max(count, len(latencies))
    measured.server_cores = server_s / measured.seconds
    measured.other_cores = max(0.0, machine_s - server_s) / measured.seconds
    measured.load_average.append(os.getloadavg()[0])
    return measured


_SENT = re.compile(rb'\{"timestamp":(\d+),')
_ANSWERED = re.compile(rb'"response_timestamps":\[([\d,]*)\]')


def _export_latencies_ms(path: Path) -> np.ndarray:
    """Per-request latencies from perf_analyzer's `--profile-export-file`: last response time less
    send time, every request. Read as bytes, not JSON: the export copies each request's tensors,
    and perf_analyzer 2.51 writes a BYTES tensor (the JPEG) raw, which breaks the JSON."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UnavailableError(f"perf_analyzer's profile export {path} cannot be read: {exc}") from exc
    sent = [(m.start(), int(m.group(1))) for m in _SENT.finditer(raw)]
    answered = [(m.start(), m.group(1)) for m in _ANSWERED.finditer(raw)]
    latencies = []
    for index, (position, sent_ns) in enumerate(sent):
        # A request's response times come after its send time and before the next request's.
        end = sent[index + 1][0] if index + 1 < len(sent) else len(raw)
        times = next((t for p, t in answered if position < p < end), b"")
        if times:
            latencies.append((int(times.split(b",")[-1]) - sent_ns) / 1e6)
    if len(latencies) < 2:
        raise UnavailableError(
            f"perf_analyzer's profile export {path} holds {len(latencies)} answered requests"
        )
    return np.array(latencies)


def _busy_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _machine_busy_s() -> float:
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + times.irq + times.softirq + times.steal)


def _first_row(text: str) -> dict[str, float]:
    """perf_analyzer's `-f` CSV, first data row by column name (rate mode has no Concurrency)."""
    reader = csv.DictReader(io.StringIO(text))
    for row in reader:
        return {name.strip(): float(value) for name, value in row.items() if name and value}
    raise UnavailableError("perf_analyzer wrote an empty CSV")


def simulated_p99(
    plan: Plan, profile_path: Path, rate: float, run_size: int, cores: float | None = None
) -> PercentileEstimate:
    """The plan's simulator at one pod's load (`cores` replaces the pod's: what it really got): the
    p99 of the long simulated run, and the 95% range of a p99 from `run_size` requests."""
    profile = Profile.load(profile_path)
    pods = sim_pods(plan, profile)
    if cores is not None:
        pods = tuple(replace(pod, capacity=max(0.05, cores)) for pod in pods)
    options = SimOptions(rate, duration_s=SIMULATED_S, warmup_s=30.0, seed=7)
    result = simulate((replace(pods[0], replicas=1),), plan_pipelines(plan, profile), options)
    return run_percentile_range(result.latencies_ms[ENSEMBLE], 99, run_size)


def error(measured: float, predicted: float) -> float:
    return (measured - predicted) / predicted if predicted else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.fleet:
        from bench.plan_fleet import fleet_main  # imports this module's helpers

        return fleet_main(args)
    started = time.monotonic()
    repository = args.out / "repository"
    if not (repository / ENSEMBLE / "config.pbtxt").is_file():
        build_vision_stack(repository, progress=False)
    image = samples.encode(samples.photo("astronaut"), "JPEG")
    image_path = args.out / "astronaut.jpg"
    image_path.write_bytes(image)
    outcome, profile_path = profile_and_plan(args, repository, image_path)
    plan = outcome.plan
    if len(plan.pods) != 1:
        raise UnavailableError(f"expected one pod type for one pipeline, the plan has {len(plan.pods)}")
    pod = plan.pods[0]
    per_pod_rate = plan.requests_per_s * plan.peak_factor / pod.replicas
    predicted_cpu_ms = pod.cost_ms_per_request

    planned_repo = args.out / "planned_repository"
    shutil.rmtree(planned_repo, ignore_errors=True)
    shutil.copytree(repository, planned_repo)
    patched = apply_to_repository(planned_repo, plan.config_patches())
    step(f"applied the plan's config patch to {len(patched)} models in {planned_repo}")

    binary = find_binary(args.perf_analyzer)
    work = args.out / "perf_analyzer"
    work.mkdir(exist_ok=True)
    input_path = work / "input_data.json"
    input_path.write_text(json.dumps(perf_analyzer_input_data("IMAGE", image, [1, 1])))
    models = sorted(p.name for p in planned_repo.iterdir() if (p / "config.pbtxt").is_file())
    http, grpc, metrics = pick_free_ports(3)
    server = ServerProcess(planned_repo, ServerPorts(http, grpc, metrics), args.out / "server.log", models)
    server.start([ENSEMBLE], timeout_s=240.0)
    try:
        perf_analyzer(binary, server.http_url, input_path, ["--concurrency-range", "1:1"], 5, work, "warmup")
        wait_for_quiet(args.quiet_load, args.quiet_wait)
        planned = perf_analyzer(
            binary,
            server.http_url,
            input_path,
            [
                # Poisson arrivals at exactly the planned rate, drawn here: perf_analyzer 2.51's own
                # `--request-distribution poisson` sent 1.22/s when asked for 1.5/s.
                "--request-intervals",
                str(poisson_intervals(work / "intervals.txt", per_pod_rate, args.planned_requests)),
                # Open loop: asynchronous calls, so a slow answer does not hold back the next send.
                "--async",
                "--max-threads",
                "16",
            ],
            args.planned_requests,
            work,
            "planned_load",
        )
        concurrency = args.saturation_concurrency
        wait_for_quiet(args.quiet_load, args.quiet_wait)
        saturated = perf_analyzer(
            binary,
            server.http_url,
            input_path,
            ["--concurrency-range", f"{concurrency}:{concurrency}"],
            args.saturation_requests,
            work,
            "saturation",
        )
    finally:
        server.stop()

    step(f"simulating the planned pod at {per_pod_rate:g} req/s for the p99 prediction")
    predicted = simulated_p99(plan, profile_path, per_pod_rate, planned.requests)
    predicted_p99 = predicted.value
    saturation_simulated = saturation_throughput(
        plan, Profile.load(profile_path), pod.name, args.saturation_concurrency
    )
    rows = [
        ("max throughput, plan's bound (req/s)", pod.max_requests_per_s, saturated.requests_per_s),
        ("max throughput, simulated closed loop (req/s)", saturation_simulated, saturated.requests_per_s),
        (f"p99 at {per_pod_rate:g} req/s (ms)", predicted_p99, planned.p99_ms),
        ("server CPU per request at saturation (ms)", predicted_cpu_ms, saturated.server_cpu_ms_per_request),
        ("server CPU per request at planned load (ms)", predicted_cpu_ms, planned.server_cpu_ms_per_request),
    ]
    # Diagnosis, not the prediction: the same plan and simulator given the cores the server really
    # had while other processes ran, and the rate perf_analyzer really sent.
    had = max(0.05, min(pod.capacity, (os.cpu_count() or 2) - planned.other_cores))
    step(f"simulating the planned pod with the {had:.2f} cores it had, at {planned.requests_per_s:.2f} req/s")
    explained_p99 = simulated_p99(plan, profile_path, planned.requests_per_s, planned.requests, had).value
    rows.append((f"p99 simulated with {had:.2f} cores at the sent rate (ms)", explained_p99, planned.p99_ms))
    print(f"\n{'figure':45s} {'predicted':>10s} {'measured':>10s} {'error':>8s}")
    for name, predicted_value, measured_value in rows:
        print(
            f"{name:45s} {predicted_value:10.2f} {measured_value:10.2f} "
            f"{error(measured_value, predicted_value):+8.1%}"
        )
    measured_ci = planned.p99_ci_ms
    # The two intervals answer different questions: where the measured p99 lies (bootstrap over its
    # requests), and where a p99 of that many requests falls if the simulation is right.
    consistent = predicted.low <= measured_ci["high"] and measured_ci["low"] <= predicted.high
    print(
        f"p99 over {planned.requests} requests: measured {planned.p99_ms:.0f} ms "
        f"(95% CI {measured_ci['low']:.0f}-{measured_ci['high']:.0f}); predicted {predicted_p99:.0f} ms, "
        f"a run of {planned.requests} requests would show {predicted.low:.0f}-{predicted.high:.0f} (95%): "
        f"{'consistent' if consistent else 'NOT consistent'}"
    )
    overhead = plan.pipeline_overhead_ms.get(ENSEMBLE, 0.0)
    served = Profile.load(profile_path).model(ENSEMBLE).served
    print(
        f"serving overhead charged: {overhead:.1f} ms per request (pipeline served over HTTP in the "
        f"profiler: {served.cpu_ms if served else float('nan'):.1f} ms CPU per request)"
    )
    for run in (planned, saturated):
        print(
            f"{run.label}: load average {run.load_average}, server used {run.server_cores:.2f} cores, "
            f"other processes {run.other_cores:.2f} of {os.cpu_count()}"
        )
    result = {
        "load": args.load,
        "p99_target": args.p99,
        "pod": pod.name,
        "replicas": pod.replicas,
        "capacity": pod.capacity,
        "cpu_scale": plan.cpu_scale,
        "per_pod_rate": per_pod_rate,
        "predicted": {
            "max_requests_per_s": pod.max_requests_per_s,
            "max_requests_per_s_simulated": saturation_simulated,
            "p99_ms_simulated": predicted_p99,
            "p99_ms_range_for_run_of_measured_size": {"low": predicted.low, "high": predicted.high},
            "simulated_requests": predicted.samples,
            "serving_overhead_ms_per_request": overhead,
            "served_cpu_ms_per_request_in_profile": served.cpu_ms if served else None,
            "p99_ms_simulated_with_cores_had": explained_p99,
            "cores_had": had,
            "p99_ms_closed_form": plan.pipeline_p99_ms.get(ENSEMBLE),
            "cpu_ms_per_request": predicted_cpu_ms,
        },
        "measured": {"planned_load": planned.__dict__, "saturation": saturated.__dict__},
        "errors": {name: error(m, p) for name, p, m in rows},
        "within_tolerance": {name: abs(error(m, p)) <= TOLERANCE for name, p, m in rows[:3]},
        "p99_intervals_consistent": consistent,
        "server_exit_code": server.returncode,
        "cpus": os.cpu_count(),
        "seconds": time.monotonic() - started,
        "settings": {k: str(v) for k, v in vars(args).items()},
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    step(f"wrote {args.out / 'results.json'} in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
