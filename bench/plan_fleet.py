"""`python -m bench.plan_validation --fleet`: the plan checked on a real multi-pod fleet.

One pod = one core of this machine (the profile's `cpu_cores` set to 1), so a plan that needs two
pods runs here: each pod is its own `packserve serve` process pinned with `taskset` to its core,
behind nginx (Debian's package, `least_conn` upstream; `bash bench/setup_fleet.sh` installs it).
Predictions come first, from the plan alone (the fleet simulated at each offered rate; the fleet's
saturation throughput as replicas x the pod's bound and as a closed-loop simulation), then
perf_analyzer drives nginx with Poisson arrivals at each rate (open loop) and at fixed concurrency
(saturation), each point `--repeats` times for a range. The machine's 1-minute load average and the
CPU other processes used are recorded next to every run: that is how contention is detected.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.plan_validation import _export_latencies_ms, _first_row, _machine_busy_s, poisson_intervals, step
from bench.suite.perf_analyzer import find_binary
from bench.suite.server_process import ServerPorts, ServerProcess, pick_free_ports
from bench.vision_stack_baseline.results import perf_analyzer_input_data
from packserve.demo import samples
from packserve.demo.build import ENSEMBLE, build_vision_stack
from packserve.errors import UnavailableError
from packserve.planning.capacity.plan_check import plan_pipelines, saturation_throughput, sim_pods
from packserve.planning.capacity.planner import PlanOptions
from packserve.planning.capacity.simulator import Arrivals, SimOptions, simulate
from packserve.planning.capacity.stats import percentile_ci, run_percentile_range
from packserve.planning.commands import PlanCommand, plan_command
from packserve.planning.formats.config_patch import apply_to_repository
from packserve.planning.formats.plan_schema import Plan, gpus
from packserve.planning.formats.profile_schema import Profile
from packserve.planning.formats.units import parse_duration_ms, parse_load, parse_memory_bytes

SIMULATED_S = 1200.0


@dataclass
class Run:
    label: str
    offered_per_s: float  # 0 for closed loop
    requests_per_s: float = 0.0
    p99_ms: float = 0.0
    p99_ci_ms: tuple[float, float] = (0.0, 0.0)
    requests: int = 0
    load_average: list[float] = field(default_factory=list)
    other_cores: float = 0.0  # CPU other processes than the fleet and nginx used


class PinnedServer(ServerProcess):
    """`packserve serve` pinned to one core with taskset."""

    def __init__(self, core: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.core = core

    def command(self) -> list[str]:
        return ["taskset", "-c", str(self.core), *super().command()]


def nginx_config(prefix: Path, port: int, upstreams: list[int]) -> Path:
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=0;" for p in upstreams)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_max_body_size 64m;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  upstream fleet {{
    least_conn;
{servers}
    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://fleet;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 600s;
    }}
  }}
}}
"""
    )
    return conf


def predict(plan: Plan, profile: Profile, rates: list[float], run_size: int, clients: int) -> dict[str, Any]:
    """What the plan says before anything is measured."""
    pods = sim_pods(plan, profile)
    pipelines = plan_pipelines(plan, profile)
    p99 = {}
    for rate in rates:
        result = simulate(pods, pipelines, SimOptions(rate, duration_s=SIMULATED_S, warmup_s=60.0, seed=5))
        estimate = run_percentile_range(result.latencies_ms[ENSEMBLE], 99, run_size)
        p99[rate] = {"p99_ms": estimate.value, "low": estimate.low, "high": estimate.high}
    pod = plan.pods[0]
    closed = simulate(
        pods,
        pipelines,
        SimOptions(0.0, duration_s=600.0, warmup_s=30.0, arrivals=Arrivals("closed", clients=clients)),
    ).completed_per_s
    return {
        "p99": p99,
        "max_requests_per_s_bound": pod.max_requests_per_s * pod.replicas,
        "max_requests_per_s_simulated": closed,
        "max_requests_per_s_one_pod_simulated": saturation_throughput(plan, profile, pod.name, clients),
    }


def drive(
    binary: Path,
    url: str,
    input_path: Path,
    mode: list[str],
    count: int,
    work: Path,
    run: Run,
    fleet: list[int],
) -> Run:
    csv_path, export = work / f"{run.label}.csv", work / f"{run.label}.export.json"
    command = [
        str(binary), "-m", ENSEMBLE, "-u", url, "-i", "http", "--input-data", str(input_path), *mode,
        "--request-count", str(count), "--input-tensor-format", "binary", "--output-tensor-format", "binary",
        "-f", str(csv_path), "--profile-export-file", str(export),
    ]  # fmt: skip
    ours = [psutil.Process(pid) for pid in fleet]
    before_ours = sum(sum(p.cpu_times()[:2]) for p in ours)
    before_all, started = _machine_busy_s(), time.monotonic()
    run.load_average.append(os.getloadavg()[0])
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
    seconds = time.monotonic() - started
    (work / f"{run.label}.log").write_text(" ".join(command) + "\n\n" + done.stdout + done.stderr)
    if done.returncode != 0 or not csv_path.is_file():
        raise UnavailableError(f"perf_analyzer {run.label} exited {done.returncode}: {done.stderr[-600:]}")
    run.load_average.append(os.getloadavg()[0])
    ours_s = sum(sum(p.cpu_times()[:2]) for p in ours) - before_ours
    run.other_cores = max(0.0, _machine_busy_s() - before_all - ours_s) / seconds
    run.requests_per_s = _first_row(csv_path.read_text())["Inferences/Second"]
    latencies = _export_latencies_ms(export)
    export.unlink()
    estimate = percentile_ci(latencies, 99)
    run.p99_ms, run.p99_ci_ms, run.requests = estimate.value, (estimate.low, estimate.high), len(latencies)
    step(
        f"{run.label}: {run.requests_per_s:.2f} req/s, p99 {run.p99_ms:.0f} ms, "
        f"others {run.other_cores:.2f} cores"
    )
    return run


def fleet_main(args: argparse.Namespace) -> int:
    out: Path = args.out / "fleet"
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    repository = args.out / "repository"
    if not (repository / ENSEMBLE / "config.pbtxt").is_file():
        build_vision_stack(repository, progress=False)
    source = Path(args.fleet_profile) if args.fleet_profile else args.out / "profile.json"
    if not source.is_file():
        raise UnavailableError(
            f"no profile at {source}: run `python -m bench.plan_validation` once, or pass --fleet-profile"
        )
    # One pod = one core here, so two pods fit the 2-core machine, each pinned to its own core.
    profile = Profile.load(source)
    profile = replace(profile, extra={**profile.extra, "cpu_cores": 1})
    profile_path = out / "profile_one_core.json"
    profile.save(profile_path)
    step(f"planning {args.fleet_load} at p99 {args.p99} with one-core pods")
    options = PlanOptions(
        parse_load(args.fleet_load),
        parse_duration_ms(args.p99),
        parse_memory_bytes(args.memory),
        peak_factor=1.0,
        mix={ENSEMBLE: 1.0},
        max_utilisation=0.95,
    )
    plan = plan_command(PlanCommand(profile_path, options, out / "plan")).plan
    replicas = gpus(plan.pods)
    cores = len(os.sched_getaffinity(0))
    if len(plan.pods) != 1 or not 2 <= replicas <= cores:
        raise UnavailableError(
            f"the plan has {replicas} pods in {len(plan.pods)} kinds; the fleet check needs 2-{cores} "
            "pods of one kind (change --fleet-load)"
        )
    peak = plan.requests_per_s * plan.peak_factor
    rates = [round(peak * f, 3) for f in args.fleet_rate_factors]
    step(f"predicting before measuring: {replicas} pods, rates {rates} req/s")
    predicted = predict(plan, profile, rates, args.fleet_requests, args.saturation_concurrency)
    (out / "predicted.json").write_text(json.dumps(predicted, indent=2, default=str))

    planned_repo = out / "planned_repository"
    shutil.rmtree(planned_repo, ignore_errors=True)
    shutil.copytree(repository, planned_repo)
    apply_to_repository(planned_repo, plan.config_patches())
    models = sorted(p.name for p in planned_repo.iterdir() if (p / "config.pbtxt").is_file())
    image = samples.encode(samples.photo("astronaut"), "JPEG")
    input_path = out / "input_data.json"
    input_path.write_text(json.dumps(perf_analyzer_input_data("IMAGE", image, [1, 1])))
    binary = find_binary(args.perf_analyzer)
    servers: list[PinnedServer] = []
    nginx: subprocess.Popen[bytes] | None = None
    runs: list[Run] = []
    try:
        for index in range(replicas):
            ports = ServerPorts(*pick_free_ports(3))
            server = PinnedServer(index % cores, planned_repo, ports, out / f"server{index}.log", models)
            server.start([ENSEMBLE], timeout_s=300.0)
            servers.append(server)
        prefix = out / "nginx"
        shutil.rmtree(prefix, ignore_errors=True)
        prefix.mkdir()
        (port,) = pick_free_ports(1)
        conf = nginx_config(prefix, port, [s.ports.http for s in servers])
        nginx = subprocess.Popen([args.nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"])
        time.sleep(1.0)
        if nginx.poll() is not None:
            raise UnavailableError(
                f"nginx exited {nginx.returncode}: {(prefix / 'error.log').read_text()[-400:]}"
            )
        url = f"127.0.0.1:{port}"
        fleet = [s._process.pid for s in servers if s._process is not None] + [nginx.pid]
        drive(binary, url, input_path, ["--concurrency-range", "1:1"], 4, out, Run("warmup", 0.0), fleet)
        for repeat in range(args.repeats):
            for rate in rates:
                intervals = poisson_intervals(
                    out / f"intervals_{rate}.txt", rate, args.fleet_requests, seed=11 + repeat
                )
                mode = ["--request-intervals", str(intervals), "--async", "--max-threads", "32"]
                runs.append(
                    drive(
                        binary,
                        url,
                        input_path,
                        mode,
                        args.fleet_requests,
                        out,
                        Run(f"rate_{rate}_{repeat}", rate),
                        fleet,
                    )
                )
            mode = ["--concurrency-range", f"{args.saturation_concurrency}:{args.saturation_concurrency}"]
            runs.append(
                drive(
                    binary,
                    url,
                    input_path,
                    mode,
                    args.saturation_requests,
                    out,
                    Run(f"saturation_{repeat}", 0.0),
                    fleet,
                )
            )
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=30)
        for server in servers:
            server.stop()
    _report(plan, predicted, rates, runs, out, time.monotonic() - started)
    return 0


def _report(
    plan: Plan, predicted: dict[str, Any], rates: list[float], runs: list[Run], out: Path, seconds: float
) -> None:
    lines = [
        f"\nfleet: {gpus(plan.pods)} pods of {plan.pods[0].capacity:g} core(s), planned peak "
        f"{plan.requests_per_s * plan.peak_factor:g} req/s, p99 target {plan.p99_ms:g} ms",
        f"{'figure':42s} {'predicted (range)':>24s} {'measured (range over repeats)':>32s} {'error':>8s}",
    ]
    saturated = [r.requests_per_s for r in runs if r.offered_per_s == 0]
    for label, key in (
        ("max throughput, bound (req/s)", "max_requests_per_s_bound"),
        ("max throughput, simulated (req/s)", "max_requests_per_s_simulated"),
    ):
        value = predicted[key]
        lines.append(
            f"{label:42s} {value:24.2f} {np.median(saturated):14.2f} "
            f"({min(saturated):.2f}-{max(saturated):.2f}) "
            f"{(np.median(saturated) - value) / value:+8.1%}"
        )
    for rate in rates:
        measured = [r for r in runs if r.offered_per_s == rate]
        p99s = [r.p99_ms for r in measured]
        guess = predicted["p99"][rate]
        lines.append(
            f"{f'p99 at {rate:g} req/s (ms)':42s} {guess['p99_ms']:10.0f} "
            f"({guess['low']:.0f}-{guess['high']:.0f}) "
            f"{np.median(p99s):14.0f} ({min(p99s):.0f}-{max(p99s):.0f}) "
            f"{(np.median(p99s) - guess['p99_ms']) / guess['p99_ms']:+8.1%}"
        )
    loads = [v for r in runs for v in r.load_average]
    others = [r.other_cores for r in runs]
    lines.append(
        f"load average (1 min) during the runs: {min(loads):.2f}-{max(loads):.2f}; other processes used "
        f"{min(others):.2f}-{max(others):.2f} of {os.cpu_count()} cores (contention when above ~0.1)"
    )
    print("\n".join(lines))
    (out / "results.json").write_text(
        json.dumps(
            {"predicted": predicted, "runs": [r.__dict__ for r in runs], "seconds": seconds, "table": lines},
            indent=2,
            default=str,
        )
    )
    step(f"wrote {out / 'results.json'} in {seconds:.0f} s")
