"""PrometheusObserver: turns the engine's per-request timing records into Triton's metrics.

Threads: the engine calls the `InferenceObserver` methods on the event-loop thread (the only writer);
the metrics HTTP server calls `collect` on its own thread. Values are plain Python numbers updated
without locks (one writer, and a reader that tolerates a scrape landing between two increments);
only adding or removing a model's series takes the lock, so `collect` never sees a dict resize.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from packserve.messages import RequestTiming
from packserve.metrics import names
from packserve.metrics.names import MetricSpec

_NS_PER_US = 1_000
_NS_PER_S = 1_000_000_000


class _Buckets:
    """A cumulative-at-read histogram: per-bucket counts plus the sum of observations."""

    __slots__ = ("_counts", "_upper_bounds", "total")

    def __init__(self, upper_bounds: Sequence[float]) -> None:
        self._upper_bounds = tuple(upper_bounds)
        self._counts = [0] * (len(self._upper_bounds) + 1)  # last slot: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._upper_bounds, value)] += 1
        self.total += value

    def cumulative(self) -> tuple[list[tuple[str, float]], int]:
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self._upper_bounds, float("inf")), self._counts, strict=True):
            running += count
            buckets.append((_bound_label(bound), running))
        return buckets, running


def _bound_label(bound: float) -> str:
    return floatToGoString(bound)  # "+Inf", "0.005", "1.0": the labels prometheus_client writes


@dataclass(slots=True)
class _ModelSeries:
    """Every per-model value, for one (model, version)."""

    success: int = 0
    inference_count: int = 0
    execution_count: int = 0
    request_duration_us: int = 0
    queue_duration_us: int = 0
    compute_input_duration_us: int = 0
    compute_infer_duration_us: int = 0
    compute_output_duration_us: int = 0
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(names.FAILURE_REASONS, 0))
    pending: int | None = None  # None until the engine reports it
    load_seconds: float | None = None  # None until loaded, and again after unload
    latency: _Buckets = field(default_factory=lambda: _Buckets(names.LATENCY_BUCKETS_S))
    batch_size: _Buckets = field(default_factory=lambda: _Buckets(names.BATCH_SIZE_BUCKETS))
    cache_used: bool = False  # the cache series are exported once the model's cache is used
    cache_hits: int = 0
    cache_hit_duration_us: int = 0
    cache_misses: int = 0
    cache_miss_duration_us: int = 0


class PrometheusObserver(Collector):
    """An `InferenceObserver` that is also a Prometheus collector on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._series: dict[tuple[str, str], _ModelSeries] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    # --- InferenceObserver (event-loop thread) ---------------------------------------------

    def request_finished(
        self, model: str, version: str, timing: RequestTiming, error_reason: str | None
    ) -> None:
        series = self._get(model, version)
        if error_reason is not None:
            series.failures[error_reason] = series.failures.get(error_reason, 0) + 1
            return
        # Durations count successful requests only, as Triton does; failures only move the
        # failure counter, so an early rejection does not drag the averages down.
        series.success += 1
        total_ns = timing.total_ns
        series.request_duration_us += total_ns // _NS_PER_US
        series.queue_duration_us += timing.queue_ns // _NS_PER_US
        series.compute_input_duration_us += timing.compute_input_ns // _NS_PER_US
        series.compute_infer_duration_us += timing.compute_infer_ns // _NS_PER_US
        series.compute_output_duration_us += timing.compute_output_ns // _NS_PER_US
        series.latency.observe(total_ns / _NS_PER_S)

    def execution_finished(self, model: str, version: str, batch_size: int, timing: RequestTiming) -> None:
        series = self._get(model, version)
        series.execution_count += 1
        series.inference_count += batch_size
        series.batch_size.observe(batch_size)

    def cache_hit(self, model: str, version: str, timing: RequestTiming) -> None:
        """A response-cache hit: a successful request (as Triton counts it) and a cache hit."""
        series = self._get(model, version)
        series.success += 1
        series.request_duration_us += timing.total_ns // _NS_PER_US
        series.latency.observe(timing.total_ns / _NS_PER_S)
        series.cache_used = True
        series.cache_hits += 1
        series.cache_hit_duration_us += timing.cache_ns // _NS_PER_US

    def cache_miss(self, model: str, version: str, lookup_ns: int) -> None:
        series = self._get(model, version)
        series.cache_used = True
        series.cache_misses += 1
        series.cache_miss_duration_us += lookup_ns // _NS_PER_US

    def queue_size_changed(self, model: str, version: str, pending: int) -> None:
        self._get(model, version).pending = pending

    def model_loaded(self, model: str, version: str, seconds: float) -> None:
        self._get(model, version).load_seconds = seconds

    def model_unloaded(self, model: str, version: str) -> None:
        # Gauges describe a live model, so they go; counters stay so rate() over a reload is sane.
        series = self._series.get((model, version))
        if series is not None:
            series.load_seconds = None
            series.pending = None

    def _get(self, model: str, version: str) -> _ModelSeries:
        key = (model, version)
        series = self._series.get(key)
        if series is None:
            with self._lock:
                series = self._series.setdefault(key, _ModelSeries())
        return series

    # --- Collector (scrape thread) ----------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            snapshot = list(self._series.items())
        yield from self._counters(snapshot)
        yield from self._gauges(snapshot)
        yield from self._histograms(snapshot)

    @staticmethod
    def _counters(snapshot: list[tuple[tuple[str, str], _ModelSeries]]) -> Iterator[Metric]:
        per_model = (
            (names.REQUEST_SUCCESS, "success"),
            (names.INFERENCE_COUNT, "inference_count"),
            (names.EXECUTION_COUNT, "execution_count"),
            (names.REQUEST_DURATION_US, "request_duration_us"),
            (names.QUEUE_DURATION_US, "queue_duration_us"),
            (names.COMPUTE_INPUT_DURATION_US, "compute_input_duration_us"),
            (names.COMPUTE_INFER_DURATION_US, "compute_infer_duration_us"),
            (names.COMPUTE_OUTPUT_DURATION_US, "compute_output_duration_us"),
        )
        for spec, attribute in per_model:
            family = triton_counter(spec)
            for (model, version), series in snapshot:
                family.add_sample(spec.name, {"model": model, "version": version}, getattr(series, attribute))
            yield family
        failures = triton_counter(names.REQUEST_FAILURE)
        for (model, version), series in snapshot:
            for reason, count in list(series.failures.items()):
                labels = {"model": model, "version": version, "reason": reason}
                failures.add_sample(names.REQUEST_FAILURE.name, labels, count)
        yield failures
        cache = (
            (names.CACHE_NUM_HITS, "cache_hits"),
            (names.CACHE_HIT_DURATION_US, "cache_hit_duration_us"),
            (names.CACHE_NUM_MISSES, "cache_misses"),
            (names.CACHE_MISS_DURATION_US, "cache_miss_duration_us"),
        )
        used = [(key, series) for key, series in snapshot if series.cache_used]
        if used:
            for spec, attribute in cache:
                family = triton_counter(spec)
                for (model, version), series in used:
                    labels = {"model": model, "version": version}
                    family.add_sample(spec.name, labels, getattr(series, attribute))
                yield family

    @staticmethod
    def _gauges(snapshot: list[tuple[tuple[str, str], _ModelSeries]]) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            names.PENDING_REQUEST_COUNT.name, names.PENDING_REQUEST_COUNT.documentation,
            labels=names.MODEL_LABELS,
        )
        load = GaugeMetricFamily(
            names.MODEL_LOAD_DURATION_SECS.name, names.MODEL_LOAD_DURATION_SECS.documentation,
            labels=names.MODEL_LABELS,
        )
        for (model, version), series in snapshot:
            if series.pending is not None:
                pending.add_metric([model, version], series.pending)
            if series.load_seconds is not None:
                load.add_metric([model, version], series.load_seconds)
        yield pending
        yield load

    @staticmethod
    def _histograms(snapshot: list[tuple[tuple[str, str], _ModelSeries]]) -> Iterator[Metric]:
        for spec, attribute in ((names.REQUEST_LATENCY_SECONDS, "latency"), (names.BATCH_SIZE, "batch_size")):
            family = HistogramMetricFamily(spec.name, spec.documentation, labels=names.MODEL_LABELS)
            for (model, version), series in snapshot:
                histogram: _Buckets = getattr(series, attribute)
                buckets, _ = histogram.cumulative()
                family.add_metric([model, version], buckets, histogram.total)
            yield family


def triton_counter(spec: MetricSpec) -> Metric:
    """A counter family whose samples carry the bare name, as Triton exposes them (no `_total`).

    `packserve.metrics.exposition.render` writes such families verbatim; the stock prometheus_client
    renderer would rename them.
    """
    return Metric(spec.name, spec.documentation, "counter")
