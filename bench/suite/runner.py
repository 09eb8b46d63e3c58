"""One suite run: raw limits first (nothing else running), then the served sweep, then the outputs."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.suite.image_model import write_image_model
from bench.suite.options import SuiteOptions, perf_analyzer_shapes
from bench.suite.perf_analyzer import PerfRun, find_binary, measure
from bench.suite.raw_limit import RawOptions, composite_reason, measure_raw_limit
from bench.suite.report import plot_results, print_report
from bench.suite.results import FailedRun, SuiteResults, write_json
from bench.suite.server_process import running_server
from packserve.backends.registry import load_backend
from packserve.config.loader import load_model_config
from packserve.errors import NotFoundError, UnavailableError


def build_default_repository(path: Path) -> Path:
    """packserve's example models plus the suite's image classifier."""
    from packserve.examples.simple_repository import build_simple_repository

    build_simple_repository(path)
    write_image_model(path)
    return path


def models_to_load(repository: Path, models: Sequence[str]) -> list[str]:
    """The models and, for ensembles, every model their steps call (transitively), in first-seen order."""
    ordered: list[str] = []
    pending = list(models)
    while pending:
        name = pending.pop(0)
        if name in ordered:
            continue
        ordered.append(name)
        spec = load_model_config(repository / name, backends=load_backend).spec
        pending.extend(step.model_name for step in spec.ensemble_steps)
    return ordered


def run_suite(options: SuiteOptions, console: Console) -> SuiteResults:
    out_dir = options.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = find_binary(options.perf_analyzer)  # fail before minutes of raw measurement
    repository = options.model_repository or build_default_repository(out_dir / "repository")
    repository = repository.resolve()
    for model in options.models:
        if not (repository / model).is_dir():
            raise NotFoundError(f"model '{model}' is not in repository '{repository}'")

    results = SuiteResults(settings=_settings(options, repository), environment=_environment(binary))
    # Other processes share the cores: the 1-minute load average says how much to trust each phase.
    results.environment["load_average_1m"] = {"before_raw": _load_average()}
    for model in options.models:
        reason = composite_reason(load_model_config(repository / model, backends=load_backend).spec)
        if reason is not None:
            results.raw_skipped[model] = reason
            continue
        console.print(f"raw limit: {model} ...")
        raw_options = RawOptions(
            window_seconds=options.raw_seconds, windows=options.raw_windows, shapes=options.shapes.get(model)
        )
        results.raw[model] = measure_raw_limit(repository, model, raw_options)

    results.environment["load_average_1m"]["before_served"] = _load_average()
    perf_dir = out_dir / "perf_analyzer"
    perf_dir.mkdir(exist_ok=True)
    # Worst case per run: every trial window, plus connection set-up and warm-up.
    run_timeout_s = options.max_trials * options.measurement_interval_ms / 1000 * 2 + 60
    server_log = out_dir / "server.log"
    load = models_to_load(repository, options.models)
    with running_server(
        repository, options.models, load, server_log, options.server_start_timeout_s
    ) as server:
        results.environment["server_lists_statistics"] = server.statistics_listed()
        for model in options.models:
            for protocol in options.protocols:
                url = server.http_url if protocol == "http" else server.grpc_url
                for concurrency in options.concurrency:
                    console.print(f"served: {model} over {protocol}, concurrency {concurrency} ...")
                    run = PerfRun(
                        model=model,
                        protocol=protocol,
                        url=url,
                        concurrency=concurrency,
                        measurement_interval_ms=options.measurement_interval_ms,
                        stability_percentage=options.stability_percentage,
                        max_trials=options.max_trials,
                        shapes=perf_analyzer_shapes(options.shapes.get(model, {})),
                    )
                    try:
                        results.served.append(measure(binary, run, perf_dir, run_timeout_s))
                    except UnavailableError as exc:
                        results.failed.append(FailedRun(model, protocol, concurrency, str(exc)))
    results.environment["load_average_1m"]["after_served"] = _load_average()
    # 0 when the server drained and stopped on SIGTERM; negative (killed) when it had to be forced.
    results.environment["server_exit_code"] = server.returncode

    write_json(results, out_dir / "results.json")
    plots = plot_results(results, out_dir)
    print_report(results, console)
    console.print(f"wrote {out_dir / 'results.json'} and {len(plots)} plot(s) to {out_dir}")
    return results


def _settings(options: SuiteOptions, repository: Path) -> dict[str, Any]:
    settings = {key: value for key, value in dataclasses.asdict(options).items() if key != "shapes"}
    settings.update(
        model_repository=str(repository),
        out_dir=str(options.out_dir),
        perf_analyzer=str(options.perf_analyzer) if options.perf_analyzer else None,
        shapes={m: {t: list(d) for t, d in s.items()} for m, s in options.shapes.items()},
    )
    return settings


def _environment(binary: Path) -> dict[str, Any]:
    import onnxruntime

    import packserve

    try:
        answer = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        lines = (answer.stdout + answer.stderr).splitlines()
        version = next((line.strip() for line in lines if "Version" in line), "unknown")
    except (OSError, subprocess.TimeoutExpired):
        version = "unknown"
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "packserve": getattr(packserve, "__version__", "unknown"),
        "perf_analyzer": version,
    }


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on every platform
        return None
