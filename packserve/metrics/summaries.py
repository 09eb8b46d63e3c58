"""Triton's optional latency summaries (`--metrics-config summary_latencies=true`):
nv_inference_{request,queue,compute_input,compute_infer,compute_output}_summary_us, with quantile
labels (Triton's default quantiles 0.5, 0.9, 0.95, 0.99), `_count` and `_sum`.

Quantiles are over a sliding window (the last `max_age_s` seconds, at most `max_samples`
observations per series), computed at scrape time; `_count`/`_sum` cover the server's life. Like
Triton, only successful requests are observed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from packserve.messages import RequestTiming

DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
_SERIES: tuple[tuple[str, str, Callable[[RequestTiming], int]], ...] = (
    ("nv_inference_request_summary_us", "Summary of inference request duration in microseconds",
     lambda t: t.total_ns),
    ("nv_inference_queue_summary_us", "Summary of inference queuing duration in microseconds",
     lambda t: t.queue_ns),
    ("nv_inference_compute_input_summary_us", "Summary of compute input duration in microseconds",
     lambda t: t.compute_input_ns),
    ("nv_inference_compute_infer_summary_us", "Summary of compute model duration in microseconds",
     lambda t: t.compute_infer_ns),
    ("nv_inference_compute_output_summary_us", "Summary of compute output duration in microseconds",
     lambda t: t.compute_output_ns),
)  # fmt: skip


class _Window:
    __slots__ = ("count", "samples", "total")

    def __init__(self, max_samples: int) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self.count = 0
        self.total = 0.0


class LatencySummaries(Collector):
    """An InferenceObserver (only `request_finished` matters) and a collector of the summaries."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        max_age_s: float = 60.0,
        max_samples: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._quantiles = tuple(quantiles)
        self._max_age_s = max_age_s
        self._max_samples = max_samples
        self._clock = clock
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._lock = threading.Lock()  # observations on the loop, scrapes on the metrics thread
        if registry is not None:
            registry.register(self)

    def request_finished(
        self, model: str, version: str, timing: RequestTiming, error_reason: str | None
    ) -> None:
        if error_reason is not None:
            return
        now = self._clock()
        with self._lock:
            for name, _, read in _SERIES:
                key = (name, model, version)
                window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = _Window(self._max_samples)
                value_us = read(timing) / 1000.0
                window.samples.append((now, value_us))
                window.count += 1
                window.total += value_us

    def execution_finished(self, model: str, version: str, batch_size: int, timing: RequestTiming) -> None:
        return

    def queue_size_changed(self, model: str, version: str, pending: int) -> None:
        return

    def model_loaded(self, model: str, version: str, seconds: float) -> None:
        return

    def model_unloaded(self, model: str, version: str) -> None:
        return

    def collect(self) -> Iterable[Metric]:
        oldest = self._clock() - self._max_age_s
        with self._lock:
            snapshot = [
                (key, [v for at, v in w.samples if at >= oldest], w.count, w.total)
                for key, w in self._windows.items()
            ]
        for name, documentation, _ in _SERIES:
            family = Metric(name, documentation, "summary")
            for (series, model, version), values, count, total in snapshot:
                if series != name:
                    continue
                labels = {"model": model, "version": version}
                if values:
                    for quantile, value in zip(
                        self._quantiles, np.quantile(values, self._quantiles), strict=True
                    ):
                        family.add_sample(name, {**labels, "quantile": str(quantile)}, float(value))
                family.add_sample(f"{name}_count", labels, count)
                family.add_sample(f"{name}_sum", labels, total)
            yield family


def parse_quantiles(text: str) -> tuple[float, ...]:
    """Triton's `summary_quantiles=0.5:0.05,0.9:0.01` (quantile:error); the error is accepted and
    not needed, since quantiles are computed exactly over the window."""
    quantiles = []
    for item in text.split(","):
        quantile = float(item.split(":", 1)[0])
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"quantile {quantile} is not between 0 and 1")
        quantiles.append(quantile)
    return tuple(quantiles)
