"""Describing the planner's chosen groups as the plan's pods: per-model settings, what one pod
serves at saturation, which resource sets its replica count, and each pipeline's predicted p99.

The planner decides which models share a pod kind and how many replicas it needs (`planner.py`);
this module only turns that decision into the `PodPlan`s and figures the plan file carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from packserve.planning.capacity.device_model import PodThroughput, pod_throughput
from packserve.planning.capacity.placement import PricedGroup, host_utilisation
from packserve.planning.capacity.workload import Pipeline
from packserve.planning.formats.plan_schema import ModelPlan, PodPlan
from packserve.planning.formats.profile_schema import Profile


@dataclass(frozen=True, slots=True)
class PodContext:
    """What describing a pod needs beyond its priced group."""

    profile: Profile
    pipelines: list[Pipeline]
    budgets: Mapping[str, float]
    batching: Mapping[str, bool]
    tunable: Mapping[str, bool]
    capacity: float
    scale: float
    host_cores: float = 0.0
    max_utilisation: float = 0.8


def _binding(device: float, host: float, limit: float) -> str:
    """Which resource sets the pod count: the busier of device and host CPU when either is near the
    limit the plan allowed, else the latency target (batches capped by stage budgets)."""
    if host > 0 and host >= device and host >= 0.9 * limit:
        return "host CPU"
    if device >= 0.9 * limit:
        return "device"
    return "latency target"


def pod_plan(index: int, group: PricedGroup, context: PodContext) -> PodPlan:
    setting = group.setting
    budgets, batching = context.budgets, context.batching
    models = tuple(
        ModelPlan(
            name=m.model,
            batch_size=m.option.batch_size,
            instances=m.option.instances,
            max_queue_delay_us=m.max_queue_delay_us,
            rate_per_s=m.rate_per_s,
            batch_latency_ms=m.option.latency_ms,
            occupancy_ms=m.option.occupancy_ms,
            memory_bytes=m.option.memory_bytes,
            budget_ms=budgets[m.model],
            predicted_p99_ms=m.predicted_p99_ms,
            utilisation=m.utilisation,
            share=group.share_of(m.model),
            batching=batching[m.model],
            tunable=context.tunable[m.model],
        )
        for m in setting.models
    )
    served = [p for p in context.pipelines if set(p.calls()) <= set(group.models)]
    planned = {m.model: (m.option.batch_size, m.option.instances) for m in setting.models}
    saturated = (
        pod_throughput(context.profile, served, planned, context.capacity, context.scale)
        if served
        else PodThroughput(0.0, 0.0)
    )
    return PodPlan(
        name=(f"pod-{index}" if len(group.models) > 1 else f"pod-{group.models[0]}")
        + ("-dedicated" if group.dedicated else ""),
        models=models,
        replicas=group.replicas,
        duty_cycle_ms=setting.duty_cycle_ms,
        utilisation=setting.utilisation,
        memory_bytes=setting.memory_bytes,
        capacity=context.capacity,
        max_requests_per_s=saturated.max_requests_per_s,
        cost_ms_per_request=saturated.cost_ms_per_request,
        also_loads=tuple(sorted(_reachable(context.profile, [p.name for p in served]) - set(group.models))),
        host_cores=context.host_cores,
        host_utilisation=(host := host_utilisation(setting, context.host_cores)),
        binding=_binding(setting.utilisation, host, context.max_utilisation),
    )


def _reachable(profile: Profile, names: list[str]) -> set[str]:
    """These models and every model their steps call, through nested ensembles and region maps."""
    found: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(step.model for step in profile.model(name).steps)
    return found


def pipeline_p99(pipelines: list[Pipeline], groups: list[PricedGroup]) -> dict[str, float]:
    """Worst-case end-to-end latency per pipeline: critical path of per-stage predicted p99s."""
    stage: dict[str, float] = {}
    for group in groups:  # a model on dedicated and mixed pods: the slower of the two
        for m in group.setting.models:
            stage[m.model] = max(stage.get(m.model, 0.0), m.predicted_p99_ms)
    result: dict[str, float] = {}
    for pipeline in pipelines:
        finish: list[float] = []
        for step in pipeline.steps:
            finish.append(max((finish[i] for i in step.after), default=0.0) + stage[step.model])
        result[pipeline.name] = max(finish, default=0.0) + pipeline.overhead_ms
    return result
