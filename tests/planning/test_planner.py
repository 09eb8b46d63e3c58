"""The planner against brute force on small synthetic profiles whose best answer can be enumerated."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest

from packserve.errors import InvalidArgumentError
from packserve.planning.capacity.duty_cycle import Option, max_mean_arrivals, options_of, poisson_quantile
from packserve.planning.capacity.planner import PlanOptions, plan
from packserve.planning.formats.plan_schema import gpus
from tests.planning.planning_synthetic import MIB, LinearModel, linear_profile

GIB = 1024**3


def _partitions(items: list[str]) -> list[list[tuple[str, ...]]]:
    if not items:
        return [[]]
    first, rest = items[0], items[1:]
    result = []
    for partial in _partitions(rest):
        result.append([(first,), *partial])
        for i, group in enumerate(partial):
            result.append([*partial[:i], (first, *group), *partial[i + 1 :]])
    return result


def _feasible(
    combo: tuple[Option, ...], everything: list[list[Option]], rates: list[float], budget: float, memory: int
) -> bool:
    """At the longest cycle the combo allows, one mean-sized batch per model fits 80% of the cycle."""
    if sum(o.memory_bytes for o in combo) > memory:
        return False
    cycle = math.inf
    for option, rate in zip(combo, rates, strict=True):
        fill = math.inf if rate <= 0 else 1000 * max_mean_arrivals(option.batch_size, 0.99) / rate
        cycle = min(cycle, fill, budget - option.latency_ms)
    if cycle <= 0:
        return False
    busy = 0.0
    for option, measured, rate in zip(combo, everything, rates, strict=True):
        same = sorted((o.batch_size, o.occupancy_ms) for o in measured if o.instances == option.instances)
        rows = rate * cycle / 1000
        sizes, times = [b for b, _ in same], [t for _, t in same]
        # Under one arrival per cycle, a batch of one runs only in the cycles that have one.
        busy += (
            rows * float(np.interp(1.0, sizes, times)) if rows < 1 else float(np.interp(rows, sizes, times))
        )
    return busy <= 0.8 * cycle


def _brute_force_pods(models: list[LinearModel], rate_each: float, budget: float, memory: int) -> int:
    profile = linear_profile(models)
    options = {m.name: options_of(profile.model(m.name)) for m in models}
    best = math.inf
    for partition in _partitions([m.name for m in models]):
        total = 0
        for group in partition:
            for replicas in range(1, 200):
                rates = [rate_each / replicas] * len(group)
                everything = [options[n] for n in group]
                if any(_feasible(c, everything, rates, budget, memory) for c in product(*everything)):
                    total += replicas
                    break
            else:
                total = math.inf  # type: ignore[assignment]
        best = min(best, total)
    return int(best)


CASES = [
    # (models, requests/s per model at peak, p99 ms, memory)
    (
        [LinearModel("a", 4, 1, 1000), LinearModel("b", 6, 0.5, 1000), LinearModel("c", 2, 2, 1000)],
        150.0,
        60.0,
        8 * GIB,
    ),
    (
        [LinearModel("a", 4, 1, 3000), LinearModel("b", 6, 0.5, 3000), LinearModel("c", 2, 2, 3000)],
        150.0,
        60.0,
        8 * GIB,
    ),
    (
        [
            LinearModel("a", 1, 3, 500),
            LinearModel("b", 8, 0.2, 500),
            LinearModel("c", 3, 1, 500),
            LinearModel("d", 5, 0.5, 500),
        ],
        60.0,
        40.0,
        4 * GIB,
    ),
    ([LinearModel("a", 10, 2, 900), LinearModel("b", 1, 0.5, 900)], 400.0, 80.0, 2 * GIB),
]


@pytest.mark.parametrize(("models", "rate", "p99", "memory"), CASES)
def test_planner_matches_brute_force(models: list[LinearModel], rate: float, p99: float, memory: int) -> None:
    profile = linear_profile(models)
    # Every model is its own pipeline with an equal share: each sees `rate` calls/s at peak.
    options = PlanOptions(
        requests_per_s=rate * len(models), p99_ms=p99, memory_bytes=memory, peak_factor=1.0, memory_reserve=0.0
    )
    result = plan(profile, options)
    expected = _brute_force_pods(models, rate, p99, memory)
    assert gpus(result.pods) == expected
    for pod in result.pods:
        assert pod.memory_bytes <= memory
        assert sum(m.occupancy_ms for m in pod.models) <= 0.8 * pod.duty_cycle_ms + 1e-9
        for m in pod.models:
            assert m.predicted_p99_ms <= p99 + 1e-9
    assert gpus(result.pods) <= gpus(plan(profile, options, "per_model").pods)


def test_memory_forces_a_split() -> None:
    models = [LinearModel(n, 2, 0.5, 6000) for n in "abc"]
    result = plan(linear_profile(models), PlanOptions(300, 100, 16 * GIB, peak_factor=1, memory_reserve=0))
    assert len(result.pods) == 2  # two 6000 MiB models fit in 16 GiB, three do not
    assert all(p.memory_bytes <= 16 * GIB for p in result.pods)


def test_light_models_share_one_pod() -> None:
    models = [LinearModel(f"m{i}", 3, 0.5, 800) for i in range(5)]
    result = plan(linear_profile(models), PlanOptions(50, 100, 16 * GIB))
    assert gpus(result.pods) == 1
    assert gpus(plan(linear_profile(models), PlanOptions(50, 100, 16 * GIB), "per_model").pods) == 5
    assert len(result.pods[0].models) == 5


def test_pipeline_models_stay_together_and_stage_budgets_sum_to_slo() -> None:
    models = [LinearModel("pre", 2, 0.5, 500), LinearModel("det", 6, 2, 2000), LinearModel("cls", 3, 1, 500)]
    profile = linear_profile(models, ensembles={"pipe": ["pre", "det", "cls"]})
    result = plan(profile, PlanOptions(200, 120, 16 * GIB))
    pods_of = {m.name: pod.name for pod in result.pods for m in pod.models}
    assert len({pods_of["pre"], pods_of["det"], pods_of["cls"]}) == 1
    budgets = sum(m.budget_ms for pod in result.pods for m in pod.models)
    assert budgets == pytest.approx(120)
    assert result.pipeline_p99_ms["pipe"] <= 120 + 1e-9


def test_poisson_quantile_known_values() -> None:
    assert poisson_quantile(1.0, 0.99) == 4  # P(X<=3)=0.981, P(X<=4)=0.996
    assert poisson_quantile(0.0, 0.99) == 0
    assert poisson_quantile(10.0, 0.5) == 10
    big = poisson_quantile(10_000.0, 0.99)
    assert 10_000 + 2.2 * 100 < big < 10_000 + 2.45 * 100


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (PlanOptions(100, 5, 16 * GIB), "cannot be met"),
        (PlanOptions(100, 100, 100 * MIB), "needs"),
        (PlanOptions(100, 100, 16 * GIB, mix={"nope": 1.0}), "'nope' is not in the profile"),
        (PlanOptions(100, 100, 16 * GIB, peak_factor=0.5), "peak-factor"),
    ],
)
def test_impossible_requests_say_why(options: PlanOptions, message: str) -> None:
    profile = linear_profile([LinearModel("a", 8, 1, 1000)])
    with pytest.raises(InvalidArgumentError, match=message):
        plan(profile, options)
