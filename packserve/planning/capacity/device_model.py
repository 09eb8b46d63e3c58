"""What one pod's device offers and what a request costs on it: the GPU and CPU cases in one place.

A GPU runs one batch at a time (capacity 1) and a batch occupies it for b / throughput, as measured.
A CPU pod is the profiled machine: it runs as many single-threaded batches at once as it has cores,
and a batch occupies a core for the CPU time it was measured to cost. Wall time is the wrong measure
there: on a shared or busy machine it includes time the process was not running, while CPU time
counts only the work. A request then costs the sum of its models' CPU time, and a pod saturates
when that work fills its cores or when one model's instances are all busy. Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from packserve.planning.capacity.duty_cycle import options_of
from packserve.planning.capacity.workload import Pipeline
from packserve.planning.formats.profile_schema import Profile


def capacity_of(profile: Profile) -> float:
    """Batches one pod runs at once: the profiled machine's cores on a CPU, 1 on a GPU."""
    return float(profile.cpu_cores) if profile.cpu_cores > 0 else 1.0


def cpu_scale(profile: Profile, pipelines: Sequence[Pipeline]) -> float:
    """How CPU time measured per model becomes device time in the plan: 1 on a CPU profile whose
    points carry CPU time (a request costs the sum of its models' CPU), 0 otherwise (GPU profiles
    and CPU profiles without CPU time: occupancy is b / throughput).

    Measured on the 2-core machine (docs/planning.md, "Validated on this machine"): the served
    pipeline's CPU per request, HTTP included, came within 1-11% of the sum of its models' CPU
    measured one at a time, while scaling by the ensemble's own in-process CPU per request (one
    noisy point of a few dozen requests) made the prediction worse, not better."""
    if profile.cpu_cores <= 0:
        return 0.0
    models = {step.model for pipeline in pipelines for step in pipeline.steps}
    measured = all(any(p.cpu_ms > 0 for p in profile.model(m).points) for m in models)
    return 1.0 if measured else 0.0


def serving_overhead_ms(profile: Profile, pipeline: Pipeline, scale: float) -> float:
    """CPU time serving adds to one request of `pipeline` beyond its models' work, as the plan
    charges that work: the pipeline's CPU per request served over HTTP (`ModelProfile.served`)
    less the sum of its steps' CPU at batch size 1 (what each of those served requests ran).

    That difference is the HTTP front end, request decode and response encode, the ensemble's own
    scheduling and the server's other threads - work the in-process profile of each model does not
    run, measured rather than assumed. 0 on a GPU plan (the front end's CPU is not device time), for
    a plain model, without a served measurement, and when the models alone already cost more than
    the served request (the difference is then measurement noise, not work)."""
    if scale <= 0:
        return 0.0
    served = profile.model(pipeline.name).served
    if served is None or served.cpu_ms <= 0:
        return 0.0
    models_ms = 0.0
    for step in pipeline.steps:
        options = options_of(profile.model(step.model), scale)
        if not options:
            return 0.0
        smallest = min(o.batch_size for o in options)
        models_ms += min(o.occupancy_ms for o in options if o.batch_size == smallest) / smallest
    return max(0.0, served.cpu_ms - models_ms)


def with_serving_overhead(profile: Profile, pipelines: Sequence[Pipeline], scale: float) -> list[Pipeline]:
    """The pipelines, each carrying its measured serving overhead."""
    return [replace(p, overhead_ms=serving_overhead_ms(profile, p, scale)) for p in pipelines]


@dataclass(frozen=True, slots=True)
class PodThroughput:
    """What a saturated pod does, in its pipelines' traffic mix, with full batches."""

    cost_ms_per_request: float  # device time (CPU time on a CPU pod) one mean request costs
    max_requests_per_s: float


def pod_throughput(
    profile: Profile,
    pipelines: Sequence[Pipeline],
    settings: Mapping[str, tuple[int, int]],
    capacity: float,
    scale: float,
) -> PodThroughput:
    """Saturation throughput of one pod serving `pipelines`, each model at its planned (batch size,
    instances), with full batches (a saturated batcher finds a full queue). The lower of two bounds:
    the device (capacity over the device time a mean request costs) and the slowest model (on a CPU
    a model runs at most one batch per instance at a time, so a slow model with one instance can
    use only one core however many the pod has). A request's serving overhead uses the device
    (the CPU) too."""
    shares = sum(p.share for p in pipelines)
    total_ms = 0.0
    per_model_ms: dict[str, float] = {}
    for pipeline in pipelines:
        total_ms += pipeline.share / shares * pipeline.overhead_ms
        for step in pipeline.steps:
            batch, instances = settings[step.model]
            chosen = [
                o
                for o in options_of(profile.model(step.model), scale)
                if o.batch_size == batch and o.instances == instances
            ]
            if not chosen:
                return PodThroughput(0.0, 0.0)
            cost = pipeline.share / shares * chosen[0].occupancy_ms / batch
            total_ms += cost
            # Occupancy already spans the instances on a GPU; on a CPU each instance is one core.
            slots = min(instances, capacity) if capacity > 1 else 1.0
            per_model_ms[step.model] = per_model_ms.get(step.model, 0.0) + cost / slots
    if total_ms <= 0:
        return PodThroughput(0.0, 0.0)
    bounds = [capacity * 1000.0 / total_ms, *(1000.0 / c for c in per_model_ms.values() if c > 0)]
    return PodThroughput(total_ms, min(bounds))
