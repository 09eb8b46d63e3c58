"""Bootstrap intervals for latency percentiles."""

from __future__ import annotations

import numpy as np
import pytest

from packserve.errors import InvalidArgumentError
from packserve.planning.capacity.stats import percentile_ci, run_percentile_range


def test_interval_contains_the_estimate_and_narrows_with_more_requests() -> None:
    rng = np.random.default_rng(1)
    few = percentile_ci(rng.exponential(100.0, 200), 99)
    many = percentile_ci(rng.exponential(100.0, 20_000), 99)
    for estimate in (few, many):
        assert estimate.low <= estimate.value <= estimate.high
    assert many.high - many.low < (few.high - few.low) / 3
    # The true p99 of an exponential with mean 100 is 100 ln 100 = 460.5.
    assert many.low < 460.5 < many.high
    assert few.samples == 200 and few.confidence == 0.95


def test_run_range_is_wider_for_shorter_runs() -> None:
    values = np.random.default_rng(2).exponential(100.0, 50_000)
    short = run_percentile_range(values, 99, 240)
    long = run_percentile_range(values, 99, 2400)
    assert short.value == long.value
    assert short.high - short.low > 2 * (long.high - long.low)
    assert short.low < 460.5 < short.high


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="at least two values"):
        percentile_ci(np.array([1.0]), 99)
    with pytest.raises(InvalidArgumentError, match="percentile must be"):
        percentile_ci(np.array([1.0, 2.0]), 100)
    with pytest.raises(InvalidArgumentError, match="at least two requests"):
        run_percentile_range(np.array([1.0, 2.0]), 99, 1)
