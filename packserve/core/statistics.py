"""Per model version statistics, counted as Triton counts them, for the statistics extension.

`StatisticsCollector` is an InferenceObserver: the schedulers and the engine tell it about finished
requests and executions; `snapshot` returns the frozen `ModelStatistics` the front ends serve.
Called on the event-loop thread only, so it holds no locks.

Triton's rules kept here: success and fail count every request with its end-to-end duration; queue
and compute phases are counted for successful requests only; inference_count counts batch rows and
execution_count backend executions; batch_stats has one entry per batch size, each counting
executions with that execution's compute phases.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from packserve.core.views import BatchStats, DurationStat, InferenceStats, ModelStatistics
from packserve.messages import RequestTiming


@dataclass(slots=True)
class _Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns

    def freeze(self) -> DurationStat:
        return DurationStat(self.count, self.ns)


@dataclass(slots=True)
class _BatchPhases:
    compute_input: _Duration = field(default_factory=_Duration)
    compute_infer: _Duration = field(default_factory=_Duration)
    compute_output: _Duration = field(default_factory=_Duration)


@dataclass(slots=True)
class _ModelCounters:
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: _Duration = field(default_factory=_Duration)
    fail: _Duration = field(default_factory=_Duration)
    queue: _Duration = field(default_factory=_Duration)
    compute_input: _Duration = field(default_factory=_Duration)
    compute_infer: _Duration = field(default_factory=_Duration)
    compute_output: _Duration = field(default_factory=_Duration)
    batches: dict[int, _BatchPhases] = field(default_factory=dict)
    cache_hit: _Duration = field(default_factory=_Duration)
    cache_miss: _Duration = field(default_factory=_Duration)


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class StatisticsCollector:
    """Aggregates statistics per (model, version); implements InferenceObserver."""

    def __init__(self, wall_clock_ms: Callable[[], int] = _wall_clock_ms) -> None:
        self._wall_clock_ms = wall_clock_ms
        self._models: dict[tuple[str, str], _ModelCounters] = {}

    def _counters(self, model: str, version: str) -> _ModelCounters:
        key = (model, version)
        counters = self._models.get(key)
        if counters is None:
            counters = self._models[key] = _ModelCounters()
        return counters

    # --- InferenceObserver ----------------------------------------------------------------------

    def request_finished(
        self, model: str, version: str, timing: RequestTiming, error_reason: str | None
    ) -> None:
        counters = self._counters(model, version)
        if error_reason is not None:
            counters.fail.add(timing.total_ns)
            return
        counters.success.add(timing.total_ns)
        counters.queue.add(timing.queue_ns)
        counters.compute_input.add(timing.compute_input_ns)
        counters.compute_infer.add(timing.compute_infer_ns)
        counters.compute_output.add(timing.compute_output_ns)
        counters.last_inference_ms = self._wall_clock_ms()

    def execution_finished(self, model: str, version: str, batch_size: int, timing: RequestTiming) -> None:
        counters = self._counters(model, version)
        counters.execution_count += 1
        counters.inference_count += batch_size
        phases = counters.batches.get(batch_size)
        if phases is None:
            phases = counters.batches[batch_size] = _BatchPhases()
        phases.compute_input.add(timing.compute_input_ns)
        phases.compute_infer.add(timing.compute_infer_ns)
        phases.compute_output.add(timing.compute_output_ns)
        counters.last_inference_ms = self._wall_clock_ms()

    def cache_hit(self, model: str, version: str, timing: RequestTiming) -> None:
        """As Triton: a hit is a success and a queue entry, never an inference or execution."""
        counters = self._counters(model, version)
        counters.success.add(timing.total_ns)
        counters.queue.add(0)
        counters.cache_hit.add(timing.cache_ns)
        counters.last_inference_ms = self._wall_clock_ms()

    def cache_miss(self, model: str, version: str, lookup_ns: int) -> None:
        self._counters(model, version).cache_miss.add(lookup_ns)

    def queue_size_changed(self, model: str, version: str, pending: int) -> None:
        """Not part of Triton's statistics (the Prometheus observer reports queue sizes)."""

    def model_loaded(self, model: str, version: str, seconds: float) -> None:
        # A (re)loaded version starts from zero, as in Triton.
        self._models[(model, version)] = _ModelCounters()

    def model_unloaded(self, model: str, version: str) -> None:
        self._models.pop((model, version), None)

    # --- reading --------------------------------------------------------------------------------

    def snapshot(self, model: str, version: str) -> ModelStatistics:
        """The statistics of one model version so far (all zero if it has none yet)."""
        counters = self._models.get((model, version)) or _ModelCounters()
        batch_stats = tuple(
            BatchStats(
                batch_size=size,
                compute_input=phases.compute_input.freeze(),
                compute_infer=phases.compute_infer.freeze(),
                compute_output=phases.compute_output.freeze(),
            )
            for size, phases in sorted(counters.batches.items())
        )
        return ModelStatistics(
            name=model,
            version=version,
            last_inference_ms=counters.last_inference_ms,
            inference_count=counters.inference_count,
            execution_count=counters.execution_count,
            inference_stats=InferenceStats(
                success=counters.success.freeze(),
                fail=counters.fail.freeze(),
                queue=counters.queue.freeze(),
                compute_input=counters.compute_input.freeze(),
                compute_infer=counters.compute_infer.freeze(),
                compute_output=counters.compute_output.freeze(),
                cache_hit=counters.cache_hit.freeze(),
                cache_miss=counters.cache_miss.freeze(),
            ),
            batch_stats=batch_stats,
        )
