"""The CPU path of the planner: a pod is the profiled machine, its cores run batches side by side,
and a batch costs the CPU time it was measured to cost, scaled by what the whole pipeline costs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from packserve.errors import InvalidArgumentError
from packserve.planning.capacity.device_model import capacity_of, cpu_scale, pod_throughput
from packserve.planning.capacity.duty_cycle import expected_occupancy_ms, options_of, plan_group
from packserve.planning.capacity.plan_check import check_plan
from packserve.planning.capacity.planner import PlanOptions, plan
from packserve.planning.capacity.simulator import SimModel, SimOptions, SimPod, interpolated_service, simulate
from packserve.planning.capacity.workload import build_pipelines, latency_budgets_ms
from packserve.planning.formats.plan_schema import ModelPlan, Plan
from packserve.planning.formats.profile_schema import EnsembleStep, ModelProfile, Profile, ProfilePoint
from packserve.planning.profiling.traced_inputs import batch_of
from tests.planning.planning_synthetic import LinearModel, linear_profile

GIB = 1024**3


def _cpu_profile(cores: int, ensemble_cpu_ms: float) -> Profile:
    """pre (10 ms CPU) -> det (100 ms CPU) in an ensemble; each measured at batch 1 with 1 and 2
    instances; wall time is twice the CPU time (a busy shared machine)."""
    base = linear_profile(
        [LinearModel("pre", 0, 20, 100, max_batch_size=1), LinearModel("det", 0, 200, 300, max_batch_size=1)],
        batch_sizes=(1,),
        ensembles={"pipe": ["pre", "det"]},
    )
    cpu = {"pre": 10.0, "det": 100.0}
    models = []
    for model in base.models:
        if model.is_ensemble:
            point = ProfilePoint(1, 1, 1, 1000 / 220, 220, 240, 0, 0, 220, 0, 0, cpu_ms=ensemble_cpu_ms)
            models.append(replace(model, points=(point,)))
            continue
        points = []
        for p in model.points:
            points.append(replace(p, cpu_ms=cpu[model.name]))
            points.append(
                replace(p, instances=2, throughput_per_s=2 * p.throughput_per_s, cpu_ms=cpu[model.name])
            )
        models.append(replace(model, points=tuple(points)))
    return Profile("cpu", "test cpu", tuple(models), extra={"cpu_cores": cores})


def test_capacity_is_the_profiled_cores_on_cpu_and_one_on_gpu() -> None:
    assert capacity_of(_cpu_profile(4, 110)) == 4.0
    assert capacity_of(linear_profile([LinearModel("a", 1, 1, 1)])) == 1.0


def test_cpu_time_is_the_cost_on_cpu_profiles_only() -> None:
    profile = _cpu_profile(2, 165.0)
    assert cpu_scale(profile, build_pipelines(profile, None)) == 1.0
    assert cpu_scale(linear_profile([LinearModel("a", 1, 1, 1)]), []) == 0.0  # GPU: b / throughput
    no_cpu_time = replace(linear_profile([LinearModel("a", 1, 1, 1)]), device="cpu", extra={"cpu_cores": 2})
    assert cpu_scale(no_cpu_time, build_pipelines(no_cpu_time, None)) == 0.0


def test_cpu_options_charge_scaled_cpu_time_not_wall_time() -> None:
    profile = _cpu_profile(2, 165.0)
    det = {o.instances: o for o in options_of(profile.model("det"), 1.5)}
    assert det[1].occupancy_ms == pytest.approx(150.0)  # 100 ms CPU x 1.5, not 200 ms wall
    assert det[2].occupancy_ms == pytest.approx(150.0)  # instances do not make work cheaper
    assert det[1].latency_ms == pytest.approx(200.0)  # the measured wall time is the longer one
    gpu = options_of(profile.model("det"))
    assert sorted(o.occupancy_ms for o in gpu) == pytest.approx([100.0, 200.0])


def test_cores_multiply_what_one_pod_can_carry() -> None:
    profile = _cpu_profile(2, 110.0)
    options = {"det": [o for o in options_of(profile.model("det"), 1.0) if o.instances == 2]}
    # 12 calls/s x 100 ms = 1.2 cores: more than one core allows, within 80% of two.
    assert plan_group(options, {"det": 12.0}, {"det": 2000.0}, memory_limit=GIB, capacity=1.0) is None
    setting = plan_group(options, {"det": 12.0}, {"det": 2000.0}, memory_limit=GIB, capacity=2.0)
    assert setting is not None
    assert setting.utilisation == pytest.approx(0.6, rel=0.05)


def test_fewer_than_one_arrival_per_cycle_costs_its_share_of_a_batch() -> None:
    options = options_of(linear_profile([LinearModel("a", 0, 10, 1)], batch_sizes=(1, 2)).model("a"))
    assert expected_occupancy_ms(options[0], options, 0.25) == pytest.approx(2.5)
    assert expected_occupancy_ms(options[0], options, 2.0) == pytest.approx(20.0)


def test_pod_throughput_is_bound_by_cores_and_by_single_instance_models() -> None:
    profile = _cpu_profile(2, 110.0)
    pipelines = build_pipelines(profile, None)
    one = pod_throughput(profile, pipelines, {"pre": (1, 1), "det": (1, 1)}, 2.0, 1.0)
    assert one.cost_ms_per_request == pytest.approx(110.0)
    assert one.max_requests_per_s == pytest.approx(10.0)  # det alone on one core: 1000 / 100
    two = pod_throughput(profile, pipelines, {"pre": (1, 1), "det": (1, 2)}, 2.0, 1.0)
    assert two.max_requests_per_s == pytest.approx(2000 / 110)  # both cores busy


def test_cpu_plan_models_one_pod_as_the_machine() -> None:
    profile = _cpu_profile(2, 110.0)
    result = plan(profile, PlanOptions(8.0, 2000.0, 8 * GIB, peak_factor=1.0))
    assert len(result.pods) == 1 and result.pods[0].replicas == 1
    pod = result.pods[0]
    assert pod.capacity == 2.0
    assert pod.utilisation == pytest.approx(8 * 110 / 2000, rel=0.1)
    assert result.device_kind == "KIND_CPU"
    # 16 requests/s need 1.76 cores: more than 80% of one machine, so two pods.
    assert plan(profile, PlanOptions(16.0, 2000.0, 8 * GIB, peak_factor=1.0)).pods[0].replicas == 2


def test_simulated_cores_serve_side_by_side() -> None:
    model = SimModel("m", 1, 0, 2, interpolated_service({1: 100.0}))
    pipelines = build_pipelines(linear_profile([LinearModel("m", 0, 100, 1)]), None)
    options = SimOptions(15.0, duration_s=60, warmup_s=5, seed=3)
    one = simulate((SimPod("p", 1, (model,), capacity=1),), pipelines, options)
    two = simulate((SimPod("p", 1, (model,), capacity=2),), pipelines, options)
    # 15/s x 100 ms is 1.5 devices: one core falls behind without bound, two keep up.
    assert two.percentile_ms("m", 99) < 1000 < one.percentile_ms("m", 99)
    assert two.utilisation["p"] == pytest.approx(0.75, abs=0.08)


def test_plan_check_uses_the_cpu_model() -> None:
    profile = _cpu_profile(2, 110.0)
    result = plan(profile, PlanOptions(8.0, 2000.0, 8 * GIB, peak_factor=1.0))
    summary, simulated = check_plan(result, profile, build_pipelines(profile, None), duration_s=60)[0]
    assert summary.meets_slo
    assert simulated.utilisation[result.pods[0].name] == pytest.approx(8 * 110 / 2000, abs=0.08)


def test_budgets_give_each_stage_its_own_latency_first() -> None:
    profile = linear_profile(
        [LinearModel("pre", 2, 0, 1), LinearModel("det", 200, 0, 1)], ensembles={"pipe": ["pre", "det"]}
    )
    pipelines = build_pipelines(profile, None)
    budgets = latency_budgets_ms(pipelines, 300.0, {"pre": 2.0, "det": 200.0})
    assert budgets == {"pre": pytest.approx(51.0), "det": pytest.approx(249.0)}
    with pytest.raises(InvalidArgumentError, match=r"pipeline 'pipe' takes 202\.0 ms"):
        latency_budgets_ms(pipelines, 150.0, {"pre": 2.0, "det": 200.0})


def test_models_the_core_runs_get_no_config_patch() -> None:
    region = ModelPlan("crops", 1, 1, 0, 1.0, 1.0, 1.0, 0, 10.0, 5.0, 0.1, batching=False, tunable=False)
    assert region.config_patch("KIND_CPU") == {} and region.config_pbtxt("KIND_CPU") == ""
    profile = _cpu_profile(2, 110.0)
    result = plan(profile, PlanOptions(8.0, 2000.0, 8 * GIB, peak_factor=1.0))
    restored = Plan.from_json(result.to_json())
    assert restored.pods[0].capacity == 2.0
    assert restored.pods[0].max_requests_per_s == pytest.approx(result.pods[0].max_requests_per_s)
    assert restored.cpu_scale == result.cpu_scale


def test_batch_of_repeats_the_traced_row() -> None:
    sample = {"x": np.arange(3, dtype=np.float32).reshape(1, 3), "s": np.array([[b"jpeg"]], dtype=object)}
    batched = batch_of(sample, 4, batching=True)
    assert batched["x"].shape == (4, 3) and (batched["x"] == sample["x"][0]).all()
    assert batched["s"].shape == (4, 1) and batched["s"][3, 0] == b"jpeg"
    assert batch_of(sample, 4, batching=False)["x"].shape == (1, 3)


def test_cpu_profile_round_trips_cpu_fields() -> None:
    profile = _cpu_profile(2, 110.0)
    restored = Profile.from_json(profile.to_json())
    assert restored.cpu_cores == 2
    assert restored.model("det").points[0].cpu_ms == 100.0
    assert Profile.from_json({**profile.to_json(), "device": "cuda:0"}).cpu_cores == 0


def test_region_map_steps_are_not_pipelines_of_their_own() -> None:
    leaf = linear_profile([LinearModel("crops", 1, 1, 1), LinearModel("onet", 1, 1, 1)])
    region = ModelProfile(
        "crops", "region_map", "", 0, leaf.model("crops").points, (EnsembleStep("onet", (), ()),)
    )
    profile = replace(leaf, models=(region, leaf.model("onet")))
    assert [p.name for p in build_pipelines(profile, None)] == ["crops"]


@pytest.mark.parametrize(
    ("cores", "jobs", "finish_s"),
    [
        (1.0, [1.0, 1.0], [2.0, 2.0]),  # two batches share one core: both take twice as long
        (2.0, [1.0, 1.0], [1.0, 1.0]),  # one core each
        (2.0, [1.0, 1.0, 1.0], [1.5, 1.5, 1.5]),  # three on two cores: two thirds of a core each
        (2.0, [0.5, 2.0], [0.5, 2.0]),  # one batch never uses more than one core
        (0.5, [1.0], [2.0]),  # half a machine
    ],
)
def test_shared_cores_divide_the_machine(cores: float, jobs: list[float], finish_s: list[float]) -> None:
    import simpy

    from packserve.planning.capacity.sim_devices import SharedCores

    env = simpy.Environment()
    device = SharedCores(env, cores)
    finished: list[float] = []

    def job(work: float):  # type: ignore[no-untyped-def]
        yield from device.run(work)
        finished.append(env.now)

    for work in jobs:
        env.process(job(work))
    env.run(until=100)
    assert sorted(finished) == pytest.approx(sorted(finish_s))


def test_a_late_batch_slows_the_running_one() -> None:
    import simpy

    from packserve.planning.capacity.sim_devices import SharedCores

    env = simpy.Environment()
    device = SharedCores(env, 1.0)
    finished: dict[str, float] = {}

    def job(name: str, start: float, work: float):  # type: ignore[no-untyped-def]
        yield env.timeout(start)
        yield from device.run(work)
        finished[name] = env.now

    env.process(job("first", 0.0, 1.0))
    env.process(job("second", 0.5, 0.25))
    env.run(until=10)
    # From 0.5 s both run at half speed: the second needs 0.5 s, the first then has 0.25 s left.
    assert finished == {"second": pytest.approx(1.0), "first": pytest.approx(1.25)}


def test_cpu_cost_is_measured_with_every_core_busy() -> None:
    profile = _cpu_profile(2, 110.0)
    det = profile.model("det")
    # Alone the detector costs 100 ms of CPU; with the other core busy, 130 ms.
    busy = tuple(replace(p, cpu_ms=130.0) if p.instances == 2 else p for p in det.points)
    options = options_of(replace(det, points=busy), 1.0)
    assert {o.instances: o.occupancy_ms for o in options} == {
        1: pytest.approx(130.0),
        2: pytest.approx(130.0),
    }
