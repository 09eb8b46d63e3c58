"""Confidence intervals for latency percentiles, by bootstrap.

A p99 from a few hundred requests rests on its few slowest ones, so a single figure says little:
two runs of the same server at the same load can differ by a fifth. These give the interval a
measured percentile is known to, and the range a run of a given size would show if the predicted
latency distribution were the true one. Pure functions over arrays of latencies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from packserve.errors import InvalidArgumentError


@dataclass(frozen=True, slots=True)
class PercentileEstimate:
    value: float  # the percentile of all the values
    low: float  # the confidence interval (or range) around it
    high: float
    samples: int  # how many values it rests on
    confidence: float

    def to_json(self) -> dict[str, float]:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "samples": self.samples,
            "confidence": self.confidence,
        }


def _checked(values: np.ndarray, q: float, confidence: float) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or len(array) < 2:
        raise InvalidArgumentError(f"a percentile interval needs at least two values, got {array.size}")
    if not 0 < q < 100 or not 0 < confidence < 1:
        raise InvalidArgumentError(
            f"percentile must be in (0, 100) and confidence in (0, 1), got {q:g} and {confidence:g}"
        )
    return array


def percentile_ci(
    values: np.ndarray, q: float, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> PercentileEstimate:
    """The `q`th percentile of `values` with a percentile-bootstrap confidence interval."""
    array = _checked(values, q, confidence)
    return _bootstrap(array, q, len(array), confidence, resamples, seed)


def run_percentile_range(
    values: np.ndarray,
    q: float,
    run_size: int,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> PercentileEstimate:
    """The `q`th percentile of a large sample (say, a long simulation) and the central `confidence`
    range of the same percentile measured on a run of only `run_size` requests drawn from it: what
    a measurement of that size should show if the sample's distribution is the truth."""
    array = _checked(values, q, confidence)
    if run_size < 2:
        raise InvalidArgumentError(f"a run needs at least two requests, got {run_size}")
    return _bootstrap(array, q, run_size, confidence, resamples, seed)


def _bootstrap(
    array: np.ndarray, q: float, size: int, confidence: float, resamples: int, seed: int
) -> PercentileEstimate:
    rng = np.random.default_rng(seed)
    draws = np.percentile(rng.choice(array, size=(resamples, size), replace=True), q, axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return PercentileEstimate(float(np.percentile(array, q)), float(low), float(high), len(array), confidence)
