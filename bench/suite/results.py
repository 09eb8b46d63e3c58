"""The figures one suite run produces, the served/raw ratio, and their JSON form.

Every class here is a plain value: the runner fills them, the report and the JSON writer read them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class RawPoint:
    """One batch size of the in-process measurement."""

    batch_size: int
    rows_per_s: float
    executions: int  # backend.execute calls made, all instances together
    mean_execute_ms: float  # wall time of one execute call, averaged over every call


@dataclass(frozen=True, slots=True)
class RawLimit:
    """The best the backend does in-process, with no server, over the batch sizes tried."""

    model: str
    backend: str
    instances: int
    points: tuple[RawPoint, ...]

    @property
    def best(self) -> RawPoint:
        return max(self.points, key=lambda point: point.rows_per_s)


@dataclass(frozen=True, slots=True)
class ServerSideStats:
    """The "Server:" block perf_analyzer prints when the server lists the statistics extension."""

    inference_count: int
    execution_count: int
    success_count: int
    avg_request_latency_us: float
    overhead_us: float
    queue_us: float
    compute_input_us: float
    compute_infer_us: float
    compute_output_us: float

    @property
    def avg_batch_size(self) -> float:
        """Rows per backend execution: how much the dynamic batcher merged."""
        return self.inference_count / self.execution_count if self.execution_count else 0.0


@dataclass(frozen=True, slots=True)
class ServedPoint:
    """One perf_analyzer run: a model, a protocol and a concurrency."""

    model: str
    protocol: str  # "http" | "grpc"
    concurrency: int
    rows_per_s: float  # perf_analyzer's "Inferences/Second" (requests x batch size)
    p50_us: float
    p90_us: float
    p95_us: float
    p99_us: float
    avg_us: float | None  # only in --verbose-csv output
    server: ServerSideStats | None  # None when perf_analyzer printed no server-side block
    # "stable": perf_analyzer's windows settled; "request_count": they did not, and a fixed number of
    # requests sized from a short probe was measured instead (no stability check).
    mode: str = "stable"


@dataclass(frozen=True, slots=True)
class FailedRun:
    """A perf_analyzer run that gave no figures (unstable, server error); kept so the report says so."""

    model: str
    protocol: str
    concurrency: int
    reason: str


@dataclass
class SuiteResults:
    settings: dict[str, Any]
    environment: dict[str, Any]
    raw: dict[str, RawLimit] = field(default_factory=dict)  # by model
    # Models with no backend of their own (ensembles) have no raw limit, with the reason why.
    raw_skipped: dict[str, str] = field(default_factory=dict)
    served: list[ServedPoint] = field(default_factory=list)
    failed: list[FailedRun] = field(default_factory=list)

    def served_for(self, model: str, protocol: str) -> list[ServedPoint]:
        points = [p for p in self.served if p.model == model and p.protocol == protocol]
        return sorted(points, key=lambda p: p.concurrency)

    def ratio(self, point: ServedPoint) -> float | None:
        limit = self.raw.get(point.model)
        return None if limit is None else served_ratio(point.rows_per_s, limit.best.rows_per_s)


def served_ratio(served_rows_per_s: float, raw_rows_per_s: float) -> float | None:
    """Served throughput as a fraction of the raw limit; None when there is no usable limit."""
    if raw_rows_per_s <= 0 or not math.isfinite(raw_rows_per_s) or not math.isfinite(served_rows_per_s):
        return None
    return served_rows_per_s / raw_rows_per_s


def results_to_json(results: SuiteResults) -> dict[str, Any]:
    """Every figure of the run, with the best raw point and each ratio spelled out for readers."""
    raw = {
        model: {**asdict(limit), "best": asdict(limit.best)} for model, limit in sorted(results.raw.items())
    }
    served = []
    for point in results.served:
        entry = asdict(point)
        entry["ratio_to_raw"] = results.ratio(point)
        entry["server_avg_batch_size"] = point.server.avg_batch_size if point.server else None
        served.append(entry)
    return {
        "settings": results.settings,
        "environment": results.environment,
        "raw": raw,
        "raw_skipped": dict(results.raw_skipped),
        "served": served,
        "failed": [asdict(failure) for failure in results.failed],
    }


def write_json(results: SuiteResults, path: Path) -> None:
    path.write_text(json.dumps(results_to_json(results), indent=2) + "\n")
