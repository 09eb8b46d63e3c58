"""The simulator against closed-form queueing results, driving the real batcher."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from packserve.errors import InvalidArgumentError
from packserve.planning.capacity.simulator import (
    Arrivals,
    SimModel,
    SimOptions,
    SimPod,
    _gaps,
    interpolated_service,
    simulate,
)
from packserve.planning.capacity.workload import LeafStep, Pipeline


def _single(service_ms: float, max_batch: int = 1, delay_us: int = 0) -> tuple[SimPod, ...]:
    model = SimModel("m", max_batch, delay_us, 1, interpolated_service({1: service_ms}))
    return (SimPod("pod", 1, (model,)),)


def _batch_means_interval(values: np.ndarray, batches: int = 20) -> tuple[float, float]:
    """Mean and half-width of a ~99.5% interval by batch means, which absorbs the autocorrelation of
    successive waiting times (t quantile 3.17 for 19 degrees of freedom)."""
    means = np.array([chunk.mean() for chunk in np.array_split(values, batches)])
    return float(means.mean()), float(3.17 * means.std(ddof=1) / np.sqrt(batches))


@pytest.mark.parametrize("utilisation", [0.3, 0.6])
def test_md1_mean_sojourn_matches_pollaczek_khinchine(utilisation: float) -> None:
    service_ms = 10.0
    rate = utilisation / (service_ms / 1000)
    pipeline = Pipeline("m", 1.0, (LeafStep("m", ()),))
    result = simulate(
        _single(service_ms), [pipeline], SimOptions(rate, duration_s=25_000 / rate, warmup_s=20, seed=3)
    )
    latencies = result.latencies_ms["m"]
    # M/D/1: mean wait in queue = rho * D / (2 (1 - rho)); sojourn adds the service time.
    expected = utilisation * service_ms / (2 * (1 - utilisation)) + service_ms
    mean, half_width = _batch_means_interval(latencies)
    assert abs(mean - expected) <= half_width + 0.02 * expected
    assert result.utilisation["pod"] == pytest.approx(utilisation, rel=0.05)
    assert result.mean_batch["m"] == 1.0


def test_batcher_delay_forms_batches_and_bounds_latency() -> None:
    # 200/s with a 20 ms delay: batches of several requests, none waiting much past the delay.
    service = interpolated_service({1: 2.0, 8: 4.0})
    model = SimModel("m", 8, 20_000, 1, service, preferred_batch_sizes=(8,))
    pipeline = Pipeline("m", 1.0, (LeafStep("m", ()),))
    result = simulate(
        (SimPod("pod", 1, (model,)),), [pipeline], SimOptions(200, duration_s=40, warmup_s=2, seed=1)
    )
    assert result.mean_batch["m"] > 3
    assert result.percentile_ms("m", 99) < 20 + 2 * 4.0 + 1


def test_pipeline_steps_wait_for_their_inputs() -> None:
    service = interpolated_service({1: 5.0})
    models = tuple(SimModel(n, 1, 0, 1, service) for n in ("a", "b"))
    chain = Pipeline("chain", 1.0, (LeafStep("a", ()), LeafStep("b", (0,))))
    result = simulate(
        (SimPod("pod", 1, models),), [chain], SimOptions(1.0, duration_s=60, warmup_s=1, seed=2)
    )
    # At a near-idle server a request is two back-to-back 5 ms steps.
    assert np.median(result.latencies_ms["chain"]) == pytest.approx(10.0, abs=0.1)


def test_mmpp_keeps_the_mean_rate_and_is_burstier_than_poisson() -> None:
    rng = np.random.default_rng(0)
    rate, duration = 100.0, 2000.0
    mmpp = np.fromiter(_gaps(SimOptions(rate, duration, arrivals=Arrivals("mmpp", burst=3.0)), rng), float)
    poisson = np.fromiter(_gaps(SimOptions(rate, duration), rng), float)
    assert len(mmpp) / duration == pytest.approx(rate, rel=0.05)

    # Index of dispersion of counts per second: 1 for Poisson, well above for a modulated process.
    def dispersion(gaps: np.ndarray) -> float:
        counts = np.bincount(np.cumsum(gaps).astype(int))[:-1]
        return float(counts.var() / counts.mean())

    assert dispersion(poisson) == pytest.approx(1.0, abs=0.2)
    assert dispersion(mmpp) > 5


def test_interpolated_service_extrapolates_per_row_slope() -> None:
    service = interpolated_service({1: 2.0, 4: 5.0})
    assert service(2) == pytest.approx(0.003)
    assert service(8) == pytest.approx(0.009)


def test_closed_loop_finds_the_saturation_throughput() -> None:
    pipelines = [Pipeline("p", 1.0, (LeafStep("m", ()),))]
    closed = SimOptions(0.0, duration_s=120, warmup_s=10, arrivals=Arrivals("closed", clients=8), seed=1)

    def throughput(instances: int, cores: float) -> float:
        model = SimModel("m", 1, 0, instances, interpolated_service({1: 100.0}))
        pod = SimPod("p", 1, (model,), capacity=cores, shared=True)
        return simulate((pod,), pipelines, closed).completed_per_s

    assert throughput(1, 2.0) == pytest.approx(10.0, rel=0.03)  # one instance: one core
    assert throughput(2, 2.0) == pytest.approx(20.0, rel=0.03)
    assert throughput(4, 2.0) == pytest.approx(20.0, rel=0.03)  # more threads than cores: shared
    with pytest.raises(InvalidArgumentError, match="at least one client"):
        simulate((SimPod("p", 1, (), 1.0),), [], replace(closed, arrivals=Arrivals("closed", clients=0)))
