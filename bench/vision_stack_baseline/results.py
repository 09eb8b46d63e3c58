"""Figures of one `vision_stack` benchmark run and their forms: perf_analyzer input, table, JSON, plot.

Pure functions over plain values, so the tests can check them without a server.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from packserve.errors import InvalidArgumentError


@dataclass(frozen=True)
class LoadPoint:
    """One layout at one concurrency."""

    layout: str  # "served" | "per_model"
    concurrency: int
    images_per_s: float
    p50_ms: float
    p99_ms: float
    failed: int = 0


@dataclass(frozen=True)
class ModelStat:
    """One composing model's share of a served run, from /v2/models/stats before and after."""

    model: str
    requests: int
    executions: int
    queue_ms: float  # average per request
    compute_ms: float  # average per request: input + infer + output

    @property
    def avg_batch(self) -> float:
        return self.requests / self.executions if self.executions else 0.0


@dataclass
class BenchReport:
    machine_load: str  # `uptime` before and after
    image_bytes: int
    points: list[LoadPoint] = field(default_factory=list)
    bare_loop: list[dict[str, float]] = field(default_factory=list)  # batch_size, workers, images_per_s
    served_stats: dict[int, list[ModelStat]] = field(default_factory=dict)  # by concurrency
    verified: dict[str, Any] = field(default_factory=dict)  # evidence the JPEG was decoded
    notes: list[str] = field(default_factory=list)

    @property
    def bare_best(self) -> float:
        return max((row["images_per_s"] for row in self.bare_loop), default=0.0)


def serialized_bytes_element(payload: bytes) -> bytes:
    """One BYTES tensor element in the binary form perf_analyzer's `b64` content must hold:
    a 4-byte little-endian length, then the bytes."""
    return struct.pack("<I", len(payload)) + payload


def perf_analyzer_input_data(input_name: str, image: bytes, shape: Sequence[int]) -> dict[str, Any]:
    """The `--input-data` JSON that makes perf_analyzer send `image` as the BYTES input."""
    encoded = base64.b64encode(serialized_bytes_element(image)).decode("ascii")
    return {"data": [{input_name: {"content": {"b64": encoded}, "shape": list(shape)}}]}


def percentile_ms(latencies_s: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile in milliseconds; NaN for no samples."""
    if not latencies_s:
        return math.nan
    ordered = sorted(latencies_s)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1] * 1000.0


def model_stat_deltas(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[ModelStat]:
    """Per-model requests, executions and average queue/compute time between two
    `GET /v2/models/stats` answers; models with no new requests are left out."""
    old = {m["name"]: m for m in before.get("model_stats", [])}
    out: list[ModelStat] = []
    for model in after.get("model_stats", []):
        try:
            name = model["name"]
            prev = old.get(name, {})
            requests = _count(model, "success") - _count(prev, "success")
            if requests <= 0:
                continue
            executions = int(model.get("execution_count", 0)) - int(prev.get("execution_count", 0))
            queue = _ns(model, "queue") - _ns(prev, "queue")
            compute = sum(
                _ns(model, part) - _ns(prev, part)
                for part in ("compute_input", "compute_infer", "compute_output")
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"model statistics answer is malformed: {exc!r}") from None
        out.append(ModelStat(name, requests, executions, queue / requests / 1e6, compute / requests / 1e6))
    return sorted(out, key=lambda s: s.compute_ms + s.queue_ms, reverse=True)


def _count(model: Mapping[str, Any], part: str) -> int:
    return int(model.get("inference_stats", {}).get(part, {}).get("count", 0))


def _ns(model: Mapping[str, Any], part: str) -> int:
    return int(model.get("inference_stats", {}).get(part, {}).get("ns", 0))


def throughput_table(report: BenchReport) -> Table:
    """Throughput and latency per layout and concurrency, with the two acceptance ratios."""
    table = Table(title=f"vision_stack, one JPEG ({report.image_bytes} bytes) per request")
    for column in (
        "concurrency",
        "layout",
        "images/s",
        "p50 ms",
        "p99 ms",
        "vs bare loop",
        "served vs per-model",
    ):
        table.add_column(column, justify="right" if column != "layout" else "left")
    bare = report.bare_best
    by_key = {(p.layout, p.concurrency): p for p in report.points}
    for concurrency in sorted({p.concurrency for p in report.points}):
        served = by_key.get(("served", concurrency))
        for layout in ("served", "per_model"):
            point = by_key.get((layout, concurrency))
            if point is None:
                continue
            versus_bare = f"{point.images_per_s / bare:.2f}x" if bare else "-"
            versus_layout = "-"
            other = by_key.get(("per_model", concurrency))
            if layout == "served" and served and other and other.images_per_s:
                versus_layout = f"{served.images_per_s / other.images_per_s:.2f}x"
            table.add_row(
                str(concurrency),
                layout,
                f"{point.images_per_s:.2f}",
                f"{point.p50_ms:.0f}",
                f"{point.p99_ms:.0f}",
                versus_bare,
                versus_layout,
            )
    for row in report.bare_loop:
        table.add_row(
            "-",
            f"bare loop b{int(row['batch_size'])} x{int(row['workers'])}",
            f"{row['images_per_s']:.2f}",
            "-",
            "-",
            f"{row['images_per_s'] / bare:.2f}x" if bare else "-",
            "-",
        )
    return table


def stats_table(concurrency: int, stats: Sequence[ModelStat]) -> Table:
    table = Table(title=f"served, concurrency {concurrency}: time per request in each model")
    for column in ("model", "requests", "avg batch", "queue ms", "compute ms"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for stat in stats:
        table.add_row(
            stat.model,
            str(stat.requests),
            f"{stat.avg_batch:.2f}",
            f"{stat.queue_ms:.1f}",
            f"{stat.compute_ms:.1f}",
        )
    return table


def report_json(report: BenchReport) -> dict[str, Any]:
    body = asdict(report)
    body["served_stats"] = {
        str(c): [asdict(s) | {"avg_batch": s.avg_batch} for s in stats]
        for c, stats in report.served_stats.items()
    }
    body["bare_loop_best_images_per_s"] = report.bare_best
    return body


def write_json(report: BenchReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report_json(report), indent=2, allow_nan=True) + "\n", encoding="utf-8")
    return path


def write_plot(report: BenchReport, path: Path) -> Path:
    """Two panels: images/s against concurrency (bare loop as a line), p50/p99 latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {
        "served": ("packserve (one process)", "tab:blue"),
        "per_model": ("one process per model", "tab:red"),
    }
    for layout, (label, color) in styles.items():
        points = sorted((p for p in report.points if p.layout == layout), key=lambda p: p.concurrency)
        if not points:
            continue
        xs = [p.concurrency for p in points]
        left.plot(xs, [p.images_per_s for p in points], "o-", color=color, label=label)
        right.plot(xs, [p.p50_ms for p in points], "o-", color=color, label=f"{label} p50")
        right.plot(xs, [p.p99_ms for p in points], "s--", color=color, label=f"{label} p99")
    if report.bare_loop:
        left.axhline(report.bare_best, color="tab:green", linestyle=":", label="bare loop, best batch")
        left.axhline(0.85 * report.bare_best, color="tab:gray", linestyle=":", label="0.85 x bare loop")
    concurrencies = sorted({p.concurrency for p in report.points})
    highest = max([p.images_per_s for p in report.points] + [report.bare_best, 0.1])
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        if concurrencies:
            axis.set_xticks(concurrencies, [str(c) for c in concurrencies])
        axis.set_xlabel("concurrent requests")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    left.set_ylabel("images/s")
    left.set_ylim(0, highest * 1.15)  # room above the bare-loop line
    right.set_ylabel("latency, ms")
    right.set_yscale("log")
    figure.suptitle("vision_stack on this machine's CPU")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
