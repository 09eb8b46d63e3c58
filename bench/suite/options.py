"""The suite's command line, parsed once into a frozen options object."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.suite.image_model import MODEL_NAME as IMAGE_MODEL_NAME
from packserve.errors import InvalidArgumentError

PROTOCOLS = ("http", "grpc")


@dataclass(frozen=True)
class SuiteOptions:
    model_repository: Path | None  # None: build one under out_dir (examples + the image model)
    models: tuple[str, ...]
    concurrency: tuple[int, ...]
    protocols: tuple[str, ...]
    out_dir: Path
    raw_seconds: float
    raw_windows: int
    measurement_interval_ms: int
    stability_percentage: float
    max_trials: int
    # model -> input -> dims without the batch dimension, for configs with -1 dimensions
    shapes: dict[str, dict[str, tuple[int, ...]]]
    perf_analyzer: Path | None
    server_start_timeout_s: float


def _positive_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidArgumentError(f"{what} must be comma-separated integers, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise InvalidArgumentError(f"{what} must be integers >= 1, got '{text}'")
    return values


def parse_shape(entry: str) -> tuple[str, str, tuple[int, ...]]:
    """Parse "model/input:d1,d2" into (model, input, dims)."""
    target, colon, dims_text = entry.partition(":")
    model, slash, tensor = target.partition("/")
    if not (colon and slash and model and tensor):
        raise InvalidArgumentError(f"--shape must look like MODEL/INPUT:D1,D2,..., got '{entry}'")
    return model, tensor, _positive_ints(dims_text, f"--shape {target}")


def perf_analyzer_shapes(shapes: dict[str, tuple[int, ...]]) -> tuple[str, ...]:
    """perf_analyzer's `--shape name:d1,d2` values for one model."""
    return tuple(f"{name}:{','.join(str(d) for d in dims)}" for name, dims in sorted(shapes.items()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.suite",
        description="Throughput of models served by packserve (perf_analyzer, HTTP and gRPC) against "
        "the raw limit of the same backend run in-process, with tables, plots and JSON.",
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        help="Triton-format model repository; default: build one under OUT/repository "
        f"(packserve's examples plus the '{IMAGE_MODEL_NAME}' CNN)",
    )
    parser.add_argument("--models", default=f"simple,{IMAGE_MODEL_NAME}", help="comma-separated model names")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated perf_analyzer concurrencies")
    parser.add_argument("--protocols", default="http,grpc", help="http, grpc or both")
    parser.add_argument("--out", type=Path, default=Path("bench/results/suite"), help="results folder")
    parser.add_argument(
        "--raw-seconds", type=float, default=0.5, help="raw limit: seconds of one timing window"
    )
    parser.add_argument(
        "--raw-windows", type=int, default=3, help="raw limit: windows per batch size, the best one kept"
    )
    parser.add_argument("--measurement-interval", type=int, default=2000, help="perf_analyzer window, ms")
    parser.add_argument(
        "--stability-percentage",
        type=float,
        default=50.0,
        help="perf_analyzer's allowed spread of the last 3 windows (its default 10%% rarely settles on a "
        "shared small machine)",
    )
    parser.add_argument("--max-trials", type=int, default=8, help="perf_analyzer windows before giving up")
    parser.add_argument(
        "--shape", action="append", default=[], help="MODEL/INPUT:D1,D2 for inputs with -1 dims (repeatable)"
    )
    parser.add_argument(
        "--perf-analyzer", type=Path, help="perf_analyzer binary (default: .tools/bin/perf_analyzer)"
    )
    parser.add_argument(
        "--server-start-timeout", type=float, default=180.0, help="seconds to wait for readiness"
    )
    return parser


def parse_options(argv: Sequence[str] | None = None) -> SuiteOptions:
    args = build_parser().parse_args(argv)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if not models:
        raise InvalidArgumentError("--models names no model")
    protocols = tuple(p.strip() for p in args.protocols.split(",") if p.strip())
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise InvalidArgumentError(
            f"--protocols must be among {', '.join(PROTOCOLS)}, got '{args.protocols}'"
        )
    if args.raw_seconds <= 0 or args.raw_windows < 1:
        raise InvalidArgumentError(
            f"--raw-seconds must be > 0 and --raw-windows >= 1 (got {args.raw_seconds}, {args.raw_windows})"
        )
    if args.measurement_interval < 100 or args.max_trials < 3:
        raise InvalidArgumentError(
            "--measurement-interval must be >= 100 ms and --max-trials >= 3 "
            f"(got {args.measurement_interval}, {args.max_trials})"
        )
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for entry in args.shape:
        model, tensor, dims = parse_shape(entry)
        shapes.setdefault(model, {})[tensor] = dims
    return SuiteOptions(
        model_repository=args.model_repository,
        models=models,
        concurrency=tuple(sorted(set(_positive_ints(args.concurrency, "--concurrency")))),
        protocols=protocols,
        out_dir=args.out,
        raw_seconds=args.raw_seconds,
        raw_windows=args.raw_windows,
        measurement_interval_ms=args.measurement_interval,
        stability_percentage=args.stability_percentage,
        max_trials=args.max_trials,
        shapes=shapes,
        perf_analyzer=args.perf_analyzer,
        server_start_timeout_s=args.server_start_timeout,
    )
