"""Check a plan by simulation: the plan's pods and settings, the profile's service times, the
peak load, under Poisson and bursty (MMPP) arrivals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from packserve.errors import InvalidArgumentError
from packserve.planning.capacity.duty_cycle import options_of
from packserve.planning.capacity.simulator import (
    Arrivals,
    SimModel,
    SimOptions,
    SimPod,
    SimResult,
    interpolated_service,
    simulate,
)
from packserve.planning.capacity.workload import Pipeline, build_pipelines
from packserve.planning.formats.plan_schema import Plan, PodPlan
from packserve.planning.formats.profile_schema import Profile

# Enough requests for a stable p99 without making `packserve plan` slow on a big fleet.
_TARGET_REQUESTS = 10_000
_MIN_DURATION_S = 10.0
_MAX_DURATION_S = 300.0


@dataclass(frozen=True, slots=True)
class ScenarioSummary:
    arrivals: str
    duration_s: float
    requests: int
    p50_ms: dict[str, float]  # per pipeline
    p99_ms: dict[str, float]
    utilisation: dict[str, float]  # per pod type
    rejected: int
    meets_slo: bool


# Models the core runs (region_map) have no instance limit: concurrent calls share the device only.
_UNLIMITED_INSTANCES = 64


def plan_pipelines(plan: Plan, profile: Profile) -> list[Pipeline]:
    """The plan's pipelines in its traffic mix, each with the serving overhead the plan charged."""
    return [
        replace(p, overhead_ms=plan.pipeline_overhead_ms.get(p.name, 0.0))
        for p in build_pipelines(profile, plan.mix)
    ]


# A step whose model runs in another pod than the request's entry pays a network round trip: a
# request and its tensors over the cluster network (an image-sized tensor at 10 Gbit/s is well
# under a millisecond; the rest is the HTTP/gRPC call). Stated, not measured.
CROSS_POD_HOP_MS = 1.0


def sim_pods(plan: Plan, profile: Profile, pods: tuple[PodPlan, ...] | None = None) -> tuple[SimPod, ...]:
    """`pods` (the plan's own by default; its baseline for the one-model-per-pod check) as the
    simulator runs them. A batch holds one of the pod's `capacity` slots (a GPU, or one core of a
    CPU pod) for the device time the planner charged it: b / throughput on a GPU, scaled CPU time on a CPU."""
    simulated = []
    for pod in plan.pods if pods is None else pods:
        models = []
        for setting in pod.models:
            measured = options_of(profile.model(setting.name), plan.cpu_scale)
            same_instances = {
                o.batch_size: o.occupancy_ms for o in measured if o.instances == setting.instances
            }
            if not same_instances:
                raise InvalidArgumentError(
                    f"model '{setting.name}' has no measurement with {setting.instances} instances"
                )
            models.append(
                SimModel(
                    name=setting.name,
                    max_batch_size=setting.batch_size if setting.batching else 1,
                    max_queue_delay_us=setting.max_queue_delay_us if setting.batching else 0,
                    instances=setting.instances if setting.tunable else _UNLIMITED_INSTANCES,
                    service_s=interpolated_service(same_instances),
                    preferred_batch_sizes=(setting.batch_size,) if setting.batching else (),
                    share=setting.share,
                )
            )
        simulated.append(
            SimPod(pod.name, pod.replicas, tuple(models), pod.capacity, shared=plan.device_kind == "KIND_CPU")
        )
    return tuple(simulated)


def saturation_throughput(
    plan: Plan, profile: Profile, pod_name: str, clients: int, duration_s: float = 600.0, seed: int = 7
) -> float:
    """Requests/s one replica of `pod_name` completes under `clients` closed-loop clients (a load
    generator at fixed concurrency), simulated: on a CPU pod the cores are shared as the operating
    system shares them, so a busy single-instance model gets less than the whole core that the
    closed-form `PodPlan.max_requests_per_s` (an upper bound) gives it."""
    pods = [p for p in sim_pods(plan, profile) if p.name == pod_name]
    if not pods:
        raise InvalidArgumentError(f"pod '{pod_name}' is not in the plan")
    served = [
        p
        for p in plan_pipelines(plan, profile)
        if {s.model for s in p.steps} <= {m.name for m in pods[0].models}
    ]
    if not served:
        raise InvalidArgumentError(f"pod '{pod_name}' serves no whole pipeline to load it with")
    options = SimOptions(
        0.0,
        duration_s=duration_s,
        warmup_s=duration_s * 0.05,
        arrivals=Arrivals("closed", clients=clients),
        seed=seed,
    )
    return simulate((replace(pods[0], replicas=1),), served, options).completed_per_s


def check_plan(
    plan: Plan,
    profile: Profile,
    pipelines: list[Pipeline],
    seed: int = 0,
    duration_s: float | None = None,
    kinds: tuple[str, ...] = ("poisson", "mmpp"),
    on_progress: Callable[[str, float], None] | None = None,
) -> list[tuple[ScenarioSummary, SimResult]]:
    """Simulate the plan's pods at peak under each arrival process in `kinds`. The same function
    checks the packed plan and the one-model-per-pod baseline (a plan whose layout is per_model)."""
    peak = plan.requests_per_s * plan.peak_factor
    if duration_s is None:
        duration_s = min(_MAX_DURATION_S, max(_MIN_DURATION_S, _TARGET_REQUESTS / peak))
    pods = sim_pods(plan, profile)
    results = []
    for kind in kinds:
        arrivals = Arrivals(kind)

        def progress(fraction: float, kind: str = kind) -> None:
            if on_progress is not None:
                on_progress(kind, fraction)

        options = SimOptions(
            requests_per_s=peak,
            duration_s=duration_s,
            warmup_s=duration_s * 0.1,
            arrivals=arrivals,
            seed=seed,
            hop_ms=CROSS_POD_HOP_MS,
            on_progress=progress,
        )
        result = simulate(pods, pipelines, options)
        p99 = {name: result.percentile_ms(name, 99) for name in result.latencies_ms}
        results.append(
            (
                ScenarioSummary(
                    arrivals=arrivals.kind,
                    duration_s=duration_s,
                    requests=sum(len(v) for v in result.latencies_ms.values()),
                    p50_ms={name: result.percentile_ms(name, 50) for name in result.latencies_ms},
                    p99_ms=p99,
                    utilisation=result.utilisation,
                    rejected=result.rejected,
                    meets_slo=all(v <= plan.p99_ms for v in p99.values()),
                ),
                result,
            )
        )
    return results
