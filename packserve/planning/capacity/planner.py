"""The capacity planner: profile + load + SLO -> pod types, replicas and per-model settings.

Pure: reads a `Profile`, returns a `Plan`. Every way it can fail raises `InvalidArgumentError`
saying what cannot be met and why. This module decides which models share a pod kind and how many
replicas each needs; `pod_plans.py` describes the chosen groups as the plan's pods.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from packserve.errors import InvalidArgumentError
from packserve.planning.capacity.device_model import capacity_of, cpu_scale, with_serving_overhead
from packserve.planning.capacity.duty_cycle import Option, options_of
from packserve.planning.capacity.placement import (
    PricedGroup,
    candidate_groups,
    choose_partition,
    components,
    replicas_for,
)
from packserve.planning.capacity.pod_plans import PodContext, pipeline_p99, pod_plan
from packserve.planning.capacity.replication import replicate
from packserve.planning.capacity.workload import (
    Pipeline,
    build_pipelines,
    latency_budgets_ms,
    rates_per_model,
)
from packserve.planning.formats.plan_schema import Plan, PodPlan, gpus
from packserve.planning.formats.profile_schema import Profile
from packserve.planning.formats.units import format_bytes


@dataclass(frozen=True, slots=True)
class PlanOptions:
    requests_per_s: float  # average load over all pipelines
    p99_ms: float  # end-to-end latency target of every pipeline
    memory_bytes: int  # device memory of one pod
    peak_factor: float = 3.0  # peak load = average x this
    mix: Mapping[str, float] | None = None  # pipeline -> share; None = equal over entry points
    memory_reserve: float = 0.1  # fraction of memory kept free for the runtime and activations
    batch_quantile: float = 0.99  # fraction of duty cycles whose arrivals must fit one batch
    max_utilisation: float = 0.8  # busy fraction of a device at peak, mean batches
    # GPU plans: host cores per GPU pod, charged the host CPU its batches were measured to cost;
    # 0 = the profile's `host_cores` (the profiling machine's), none there = not checked.
    host_cores: float = 0.0
    # Nexus-style: a saturating unit of models may get dedicated pods, its residue packed with the
    # rest (False: whole units only, every replica of a group carrying all of its models' load).
    per_model_replication: bool = True


# How models are laid out over pod kinds: "packed" lets the planner put models together (whole
# pipelines in one pod kind); "per_model" is the one-model-per-pod baseline, where a request hops
# between pod kinds. Both are priced by the same duty-cycle rule and checked by the same simulation.
LAYOUTS = ("packed", "per_model")


@dataclass(frozen=True, slots=True)
class _Prepared:
    """Everything both layouts share: work per model, options, budgets, limits."""

    profile: Profile
    options: PlanOptions
    pipelines: list[Pipeline]
    rates: dict[str, float]
    model_options: dict[str, list[Option]]
    budgets: dict[str, float]
    memory_limit: int
    capacity: float
    scale: float
    peak: float
    host_cores: float = 0.0  # GPU plans: host cores per pod (0 = not checked)


def _prepare(profile: Profile, options: PlanOptions) -> _Prepared:
    _check_options(options)
    peak = options.requests_per_s * options.peak_factor
    capacity = capacity_of(profile)
    unpriced = build_pipelines(profile, options.mix)
    scale = cpu_scale(profile, unpriced)
    pipelines = with_serving_overhead(profile, unpriced, scale)
    rates = rates_per_model(pipelines, peak)
    model_options = _measured_options(profile, rates, scale)
    fastest = {m: min(o.latency_ms for o in opts) for m, opts in model_options.items()}
    budgets = latency_budgets_ms(pipelines, options.p99_ms, fastest)
    memory_limit = int(options.memory_bytes * (1 - options.memory_reserve))
    _check_each_model_alone(model_options, budgets, memory_limit, options)
    host_cores = 0.0
    if scale <= 0 and profile.device != "cpu":
        host_cores = options.host_cores or float(profile.extra.get("host_cores", 0))
    prepared = _Prepared(
        profile,
        options,
        pipelines,
        dict(rates),
        model_options,
        dict(budgets),
        memory_limit,
        capacity,
        scale,
        peak,
        host_cores,
    )
    _check_fleet_size(prepared)
    return prepared


def lower_bound_devices(prepared: _Prepared) -> tuple[int, float]:
    """(devices, device-seconds of work per second): the total work at peak, every model at its
    cheapest measured cost per row and every request's serving overhead, over one device's
    capacity, rounded up. No plan can use fewer devices, whatever its latency target."""
    work_s = sum(
        prepared.rates[m] * min(o.occupancy_ms / o.batch_size for o in opts) / 1000.0
        for m, opts in prepared.model_options.items()
    ) + sum(prepared.peak * p.share * p.overhead_ms / 1000.0 for p in prepared.pipelines)
    devices = work_s / prepared.capacity
    if prepared.host_cores > 0:  # a GPU node's host CPU is a second resource each pod brings
        host_s = sum(
            prepared.rates[m] * min(o.host_cpu_ms / o.batch_size for o in opts) / 1000.0
            for m, opts in prepared.model_options.items()
        )
        devices = max(devices, host_s / prepared.host_cores)
    return max(1, math.ceil(devices - 1e-9)), devices * prepared.capacity


# A fleet larger than this is almost certainly a wrong --load or profile, and would take the
# planner and the simulation hours: refuse it with the number instead.
MAX_DEVICES = 100_000


def _check_fleet_size(prepared: _Prepared) -> None:
    devices, _ = lower_bound_devices(prepared)
    if devices > MAX_DEVICES:
        raise InvalidArgumentError(
            f"--load {prepared.options.requests_per_s:.4g} requests/s "
            f"at peak x{prepared.options.peak_factor:g} "
            f"needs at least {devices:,} devices; the planner refuses more than {MAX_DEVICES:,}"
        )


def plan(profile: Profile, options: PlanOptions, layout: str = "packed") -> Plan:
    """The fewest devices for `layout` (see LAYOUTS) at `options.max_utilisation`."""
    if layout not in LAYOUTS:
        raise InvalidArgumentError(f"layout '{layout}' is unknown (expected one of {', '.join(LAYOUTS)})")
    prepared = _prepare(profile, options)
    chosen = _per_model_groups(prepared) if layout == "per_model" else _packed_groups(prepared)
    return _describe_plan(prepared, chosen, layout)


def _price(
    prepared: _Prepared,
    group: tuple[str, ...],
    rates: Mapping[str, float] | None = None,
    fraction: float | None = None,
) -> PricedGroup | None:
    """The group's fewest pods at `rates` (the whole load by default). `fraction`: the share of
    its pipelines' requests those rates stand for (the serving overhead scales with it); by
    default the rates' share of the whole load, which is exact for one unit."""
    options = prepared.options
    rates = prepared.rates if rates is None else rates
    if fraction is None:
        whole = sum(prepared.rates[m] for m in group)
        fraction = sum(rates[m] for m in group) / whole if whole > 0 else 1.0
    return replicas_for(
        group,
        options=prepared.model_options,
        rates_per_s=rates,
        budgets_ms=prepared.budgets,
        memory_limit=prepared.memory_limit,
        quantile=options.batch_quantile,
        max_utilisation=options.max_utilisation,
        capacity=prepared.capacity,
        overhead_ms_per_s=_overhead_ms_per_s(prepared.pipelines, group, prepared.peak * fraction),
        host_cores=prepared.host_cores,
    )


def _packed_groups(prepared: _Prepared) -> list[PricedGroup]:
    """Whole units (what must share a process) placed by CP-SAT, or, when it needs fewer pods,
    saturating units on dedicated pods with only their residue placed (`replication.py`)."""
    models = sorted(prepared.rates)
    min_memory = {m: min(o.memory_bytes for o in prepared.model_options[m]) for m in models}
    units = components([tuple(p.calls()) for p in prepared.pipelines])
    _check_units_fit(units, min_memory, prepared.memory_limit)

    def place(rates: Mapping[str, float]) -> list[PricedGroup]:
        placed = [u for u in units if any(m in rates for m in u)]
        priced = [
            found
            for group in candidate_groups(placed, min_memory, prepared.memory_limit)
            if (found := _price(prepared, group, rates)) is not None
        ]
        return choose_partition(sorted(rates), priced)

    def one_pod(unit: tuple[str, ...], rates: Mapping[str, float]) -> PricedGroup | None:
        found = _price(
            prepared, unit, rates, fraction=sum(rates.values()) / sum(prepared.rates[m] for m in unit)
        )
        return found if found is not None and found.replicas == 1 else None

    if prepared.options.per_model_replication:
        chosen = replicate(units, prepared.rates, place, one_pod)
    else:
        chosen = place(prepared.rates)
    if not chosen:
        raise InvalidArgumentError(
            f"no placement of {', '.join(models)} meets p99 {prepared.options.p99_ms:g} ms within "
            f"{format_bytes(prepared.memory_limit)} per device"
        )
    return chosen


def _per_model_groups(prepared: _Prepared) -> list[PricedGroup]:
    chosen = []
    for model in sorted(prepared.rates):
        found = _price(prepared, (model,))
        if found is None:
            raise InvalidArgumentError(
                f"model '{model}' alone meets p99 {prepared.options.p99_ms:g} ms on no number of devices"
            )
        chosen.append(found)
    return chosen


def _describe_plan(prepared: _Prepared, chosen: list[PricedGroup], layout: str) -> Plan:
    profile, options, pipelines = prepared.profile, prepared.options, prepared.pipelines
    models = sorted(prepared.rates)
    batching = {m: profile.model(m).max_batch_size > 0 for m in models}
    tunable = {m: profile.model(m).platform != "region_map" for m in models}
    context = PodContext(
        profile,
        pipelines,
        prepared.budgets,
        batching,
        tunable,
        prepared.capacity,
        prepared.scale,
        prepared.host_cores,
        options.max_utilisation,
    )
    bound, work_s = lower_bound_devices(prepared)
    return Plan(
        profile_device=profile.device_name or profile.device,
        requests_per_s=options.requests_per_s,
        peak_factor=options.peak_factor,
        p99_ms=options.p99_ms,
        memory_bytes=options.memory_bytes,
        memory_reserve=options.memory_reserve,
        mix={p.name: p.share for p in pipelines},
        pods=tuple(
            pod_plan(i, g, context)
            for i, g in enumerate(sorted(chosen, key=lambda g: (g.models, g.dedicated)))
        ),
        baseline=(),
        pipeline_p99_ms=pipeline_p99(pipelines, chosen),
        max_utilisation=options.max_utilisation,
        cpu_scale=prepared.scale,
        device=profile.device,
        pipeline_overhead_ms={p.name: p.overhead_ms for p in pipelines},
        layout=layout,
        lower_bound=bound,
        work_devices=work_s / prepared.capacity,
    )


def _overhead_ms_per_s(pipelines: list[Pipeline], group: tuple[str, ...], requests_per_s: float) -> float:
    """Device time per second the serving overhead of the pipelines entering at this group takes:
    a request's front-end work runs where its first step runs (the whole pipeline, when packed)."""
    return sum(
        requests_per_s * p.share * p.overhead_ms for p in pipelines if p.steps and p.steps[0].model in group
    )


def _check_options(options: PlanOptions) -> None:
    if options.requests_per_s <= 0:
        raise InvalidArgumentError(
            f"load must be above zero requests per second, got {options.requests_per_s}"
        )
    if options.peak_factor < 1:
        raise InvalidArgumentError(f"--peak-factor must be at least 1, got {options.peak_factor:g}")
    if options.p99_ms <= 0:
        raise InvalidArgumentError(f"--p99 must be above zero, got {options.p99_ms:g} ms")
    if not 0 <= options.memory_reserve < 1:
        raise InvalidArgumentError(f"memory reserve must be in [0, 1), got {options.memory_reserve}")
    if not 0 < options.max_utilisation <= 1:
        raise InvalidArgumentError(f"max utilisation must be in (0, 1], got {options.max_utilisation}")
    if not 0.5 <= options.batch_quantile < 1:
        raise InvalidArgumentError(f"batch quantile must be in [0.5, 1), got {options.batch_quantile}")


def _measured_options(profile: Profile, rates: Mapping[str, float], scale: float) -> dict[str, list[Option]]:
    found: dict[str, list[Option]] = {}
    for name in rates:
        measured = options_of(profile.model(name), scale)
        if not measured:
            raise InvalidArgumentError(
                f"model '{name}' has no usable measurement in the profile (no throughput)"
            )
        found[name] = measured
    return found


def _check_each_model_alone(
    model_options: Mapping[str, list[Option]],
    budgets: Mapping[str, float],
    memory_limit: int,
    options: PlanOptions,
) -> None:
    for name, measured in model_options.items():
        smallest = min(o.memory_bytes for o in measured)
        if smallest > memory_limit:
            raise InvalidArgumentError(
                f"model '{name}' needs {format_bytes(smallest)} but a device offers "
                f"{format_bytes(memory_limit)} after a {options.memory_reserve:.0%} reserve "
                f"(--gpu-memory / --memory {format_bytes(options.memory_bytes)})"
            )
        fastest = min(o.latency_ms for o in measured)
        if fastest > budgets[name]:
            raise InvalidArgumentError(
                f"p99 {options.p99_ms:g} ms cannot be met: model '{name}' takes {fastest:.2f} ms per batch "
                f"at best but its share of the latency budget is {budgets[name]:.2f} ms"
            )


def _check_units_fit(units: list[tuple[str, ...]], min_memory: Mapping[str, int], memory_limit: int) -> None:
    for unit in units:
        need = sum(min_memory[m] for m in unit)
        if need > memory_limit:
            raise InvalidArgumentError(
                f"models {', '.join(unit)} serve one pipeline and must share a pod, but together need "
                f"{format_bytes(need)} while a device offers {format_bytes(memory_limit)}"
            )


def mean_utilisation(pods: tuple[PodPlan, ...]) -> float:
    total = gpus(pods)
    return math.fsum(p.utilisation * p.replicas for p in pods) / total if total else 0.0
