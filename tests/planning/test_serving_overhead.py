"""Serving overhead: what a request costs served over HTTP beyond its models' in-process work, and
how the planner and the simulator charge it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from packserve.errors import InvalidArgumentError
from packserve.planning.capacity.device_model import serving_overhead_ms, with_serving_overhead
from packserve.planning.capacity.plan_check import plan_pipelines, saturation_throughput
from packserve.planning.capacity.planner import PlanOptions, plan
from packserve.planning.capacity.simulator import SimModel, SimOptions, SimPod, interpolated_service, simulate
from packserve.planning.capacity.workload import build_pipelines, latency_budgets_ms
from packserve.planning.formats.plan_schema import Plan
from packserve.planning.formats.profile_schema import Profile, ServedPoint
from tests.planning.planning_synthetic import LinearModel, linear_profile

GIB = 1024**3


def _profile(served_cpu_ms: float | None) -> Profile:
    """pre (10 ms CPU) -> det (100 ms CPU), batch 1, 1 and 2 instances, on a 2-core machine; the
    ensemble served over HTTP at `served_cpu_ms` per request (None: not measured)."""
    base = linear_profile(
        [LinearModel("pre", 0, 10, 100, max_batch_size=1), LinearModel("det", 0, 100, 300, max_batch_size=1)],
        batch_sizes=(1,),
        ensembles={"pipe": ["pre", "det"]},
    )
    cpu = {"pre": 10.0, "det": 100.0}
    models = []
    for model in base.models:
        if model.is_ensemble:
            served = None if served_cpu_ms is None else ServedPoint(60, 1, served_cpu_ms, 3.0, 120.0)
            models.append(replace(model, served=served))
            continue
        points = []
        for point in model.points:
            points.append(replace(point, cpu_ms=cpu[model.name]))
            points.append(
                replace(
                    point, instances=2, throughput_per_s=2 * point.throughput_per_s, cpu_ms=cpu[model.name]
                )
            )
        models.append(replace(model, points=tuple(points)))
    return Profile("cpu", "test cpu", tuple(models), extra={"cpu_cores": 2})


def test_overhead_is_served_cpu_less_the_models_cpu() -> None:
    profile = _profile(140.0)
    (pipeline,) = build_pipelines(profile, None)
    assert serving_overhead_ms(profile, pipeline, 1.0) == pytest.approx(30.0)
    assert serving_overhead_ms(profile, pipeline, 0.0) == 0.0  # GPU plans: not device time
    assert serving_overhead_ms(_profile(None), pipeline, 1.0) == 0.0  # not measured
    assert serving_overhead_ms(_profile(100.0), pipeline, 1.0) == 0.0  # below the models: noise
    (priced,) = with_serving_overhead(profile, [pipeline], 1.0)
    assert priced.overhead_ms == pytest.approx(30.0)


def test_profile_round_trips_the_served_point() -> None:
    profile = _profile(140.0)
    assert Profile.from_json(profile.to_json()) == profile
    assert Profile.from_json(_profile(None).to_json()).model("pipe").served is None


def test_plan_charges_the_overhead_on_every_request() -> None:
    without = plan(_profile(None), PlanOptions(4.0, 2000.0, 8 * GIB, peak_factor=1.0))
    result = plan(_profile(140.0), PlanOptions(4.0, 2000.0, 8 * GIB, peak_factor=1.0))
    assert result.pipeline_overhead_ms == {"pipe": pytest.approx(30.0)}
    pod, plain = result.pods[0], without.pods[0]
    assert pod.cost_ms_per_request == pytest.approx(plain.cost_ms_per_request + 30.0)
    assert pod.utilisation == pytest.approx(plain.utilisation + 4.0 * 30.0 / 2000.0, rel=0.02)
    assert result.pipeline_p99_ms["pipe"] == pytest.approx(without.pipeline_p99_ms["pipe"] + 30.0)
    assert Plan.from_json(result.to_json()).pipeline_overhead_ms == result.pipeline_overhead_ms
    assert [p.overhead_ms for p in plan_pipelines(result, _profile(140.0))] == [pytest.approx(30.0)]


def test_overhead_can_need_another_pod() -> None:
    # 13 requests/s: 13 x 110 ms = 1.43 cores fits 80% of two; 13 x 140 ms = 1.82 does not.
    options = PlanOptions(13.0, 5000.0, 8 * GIB, peak_factor=1.0)
    assert plan(_profile(None), options).pods[0].replicas == 1
    assert plan(_profile(140.0), options).pods[0].replicas == 2


def test_overhead_comes_off_the_latency_budget() -> None:
    (pipeline,) = build_pipelines(_profile(None), None)
    plain = latency_budgets_ms([pipeline], 300.0, {"pre": 10.0, "det": 100.0})
    charged = latency_budgets_ms([replace(pipeline, overhead_ms=40.0)], 300.0, {"pre": 10.0, "det": 100.0})
    assert charged["det"] == pytest.approx(plain["det"] - 20.0)  # 40 ms less slack over two stages


def test_simulated_overhead_shares_the_cores_and_adds_latency() -> None:
    profile = _profile(None)
    models = (
        SimModel("pre", 1, 0, 2, interpolated_service({1: 10.0})),
        SimModel("det", 1, 0, 2, interpolated_service({1: 100.0})),
    )
    (pipeline,) = build_pipelines(profile, None)
    pod = (SimPod("p", 1, models, capacity=2, shared=True),)
    options = SimOptions(2.0, duration_s=300, warmup_s=5, seed=5)
    plain = simulate(pod, [pipeline], options)
    charged = simulate(pod, [replace(pipeline, overhead_ms=50.0)], options)
    assert float(np.min(plain.all_latencies_ms())) == pytest.approx(110.0, rel=0.01)
    assert float(np.min(charged.all_latencies_ms())) == pytest.approx(160.0, rel=0.01)
    assert charged.utilisation["p"] == pytest.approx(plain.utilisation["p"] + 2.0 * 0.05 / 2, abs=0.01)


def test_simulated_saturation_stays_within_the_plans_bound() -> None:
    profile = _profile(140.0)
    result = plan(profile, PlanOptions(4.0, 2000.0, 8 * GIB, peak_factor=1.0))
    pod = result.pods[0]
    simulated = saturation_throughput(result, profile, pod.name, clients=8, duration_s=120.0)
    # Two cores, 140 ms of CPU per request: at most 14.3 requests/s, and the plan's bound says so.
    assert pod.max_requests_per_s <= 2000.0 / 140.0 + 1e-6
    assert 0.8 * pod.max_requests_per_s < simulated <= pod.max_requests_per_s * 1.02
    with pytest.raises(InvalidArgumentError, match="'ghost'"):
        saturation_throughput(result, profile, "ghost", clients=8)
