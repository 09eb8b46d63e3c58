"""Which models share a pod: replicas per candidate group, then an exact set partition with CP-SAT.

Every group of models that fits the device memory is priced in pods (the fewest replicas whose
duty-cycle setting is feasible at the peak load); CP-SAT then picks groups covering each model once
at the fewest pods, fewer pod types breaking ties.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

from ortools.sat.python import cp_model

from packserve.planning.capacity.duty_cycle import GroupSetting, Option, plan_group

# Up to this many components every union is a candidate; above it, unions of up to _SMALL_GROUP
# components plus memory-first-fit groups (still solved exactly over those candidates).
_EXHAUSTIVE_MODELS = 10
_SMALL_GROUP = 3
_MAX_REPLICAS = 1_000_000


@dataclass(frozen=True, slots=True)
class PricedGroup:
    models: tuple[str, ...]
    replicas: int
    setting: GroupSetting  # per-pod setting at replicas pods
    # Fraction of its models' load this group carries (below 1 when dedicated pods of the same
    # models carry the rest: per-model replication, `replication.py`), and whether it is such a
    # dedicated group.
    shares: tuple[tuple[str, float], ...] = ()  # (model, fraction of its load); absent = 1
    dedicated: bool = False

    def share_of(self, model: str) -> float:
        return dict(self.shares).get(model, 1.0)


def replicas_for(
    models: Sequence[str],
    *,
    options: Mapping[str, Sequence[Option]],
    rates_per_s: Mapping[str, float],
    budgets_ms: Mapping[str, float],
    memory_limit: int,
    quantile: float,
    max_utilisation: float = 0.8,
    capacity: float = 1.0,
    overhead_ms_per_s: float = 0.0,
    host_cores: float = 0.0,
) -> PricedGroup | None:
    """Fewest pods for this group; None when no number of pods meets the budgets (or memory).
    `capacity`: batches one pod runs at once (1 for a GPU, its cores for a CPU);
    `overhead_ms_per_s`: device time per second the group's per-request serving overhead takes
    over the whole fleet (split evenly between its pods); `host_cores`: on a GPU node, the host
    cores one pod has - the host CPU its batches cost must fit `max_utilisation` of them too
    (0: not checked)."""
    subset = {m: options[m] for m in models}

    def attempt(replicas: int) -> GroupSetting | None:
        per_pod = {m: rates_per_s[m] / replicas for m in models}
        setting = _device_setting(replicas, per_pod)
        if setting is None or host_cores <= 0:
            return setting
        if host_utilisation(setting, host_cores) > max_utilisation + 1e-9:
            return None
        return setting

    def _device_setting(replicas: int, per_pod: dict[str, float]) -> GroupSetting | None:
        return plan_group(
            subset,
            per_pod,
            {m: budgets_ms[m] for m in models},
            memory_limit=memory_limit,
            quantile=quantile,
            max_utilisation=max_utilisation,
            capacity=capacity,
            overhead_ms_per_s=overhead_ms_per_s / replicas,
        )

    # No pod can run more than its device time allows: sum of rate x best per-row occupancy.
    busy = overhead_ms_per_s / 1000 + sum(
        rates_per_s[m] * min(o.occupancy_ms / o.batch_size for o in options[m]) / 1000 for m in models
    )
    low = max(1, math.ceil(busy / (max_utilisation * capacity) - 1e-9))
    if host_cores > 0:
        host_busy = sum(
            rates_per_s[m] * min(o.host_cpu_ms / o.batch_size for o in options[m]) / 1000 for m in models
        )
        low = max(low, math.ceil(host_busy / (max_utilisation * host_cores) - 1e-9))
    setting = attempt(low)
    if setting is not None:
        return PricedGroup(tuple(models), low, setting)
    # Feasibility only improves with more pods (each sees less load); double, then bisect.
    high = low * 2
    while (found := attempt(high)) is None:
        if high >= _MAX_REPLICAS:
            return None
        low, high = high, min(high * 2, _MAX_REPLICAS)
    best = (high, found)
    while high - low > 1:
        mid = (low + high) // 2
        candidate = attempt(mid)
        if candidate is None:
            low = mid
        else:
            high, best = mid, (mid, candidate)
    return PricedGroup(tuple(models), best[0], best[1])


def host_utilisation(setting: GroupSetting, host_cores: float) -> float:
    """Busy fraction of a GPU node's host cores: every model's calls per second at the host CPU
    its planned batch size costs per row."""
    if host_cores <= 0:
        return 0.0
    busy_ms = sum(m.rate_per_s * m.option.host_cpu_ms / m.option.batch_size for m in setting.models)
    return busy_ms / 1000.0 / host_cores


def components(pipelines_models: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """Models that must live in one pod: a pipeline runs in one process, so every model of it (and
    of any pipeline sharing a model with it) goes together."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for models in pipelines_models:
        for model in models:
            parent[root(model)] = root(models[0])
    found: dict[str, list[str]] = {}
    for model in parent:
        found.setdefault(root(model), []).append(model)
    return sorted(tuple(sorted(g)) for g in found.values())


def candidate_groups(
    units: Sequence[tuple[str, ...]], min_memory: Mapping[str, int], memory_limit: int
) -> list[tuple[str, ...]]:
    """Unions of whole components that fit the memory limit."""

    def fits(group: tuple[str, ...]) -> bool:
        return sum(min_memory[m] for m in group) <= memory_limit

    ordered = sorted(units)
    sizes = range(1, len(ordered) + 1) if len(ordered) <= _EXHAUSTIVE_MODELS else range(1, _SMALL_GROUP + 1)
    groups = {
        tuple(sorted(m for unit in chosen for m in unit))
        for size in sizes
        for chosen in combinations(ordered, size)
    }
    if len(ordered) > _EXHAUSTIVE_MODELS:
        groups.update(_first_fit_groups(ordered, min_memory, memory_limit))
    return sorted(g for g in groups if fits(g))


def _first_fit_groups(
    units: list[tuple[str, ...]], min_memory: Mapping[str, int], memory_limit: int
) -> list[tuple[str, ...]]:
    def need(models: Sequence[str]) -> int:
        return sum(min_memory[m] for m in models)

    bins: list[list[str]] = []
    for unit in sorted(units, key=lambda u: -need(u)):
        for group in bins:
            if need(group) + need(unit) <= memory_limit:
                group.extend(unit)
                break
        else:
            bins.append(list(unit))
    return [tuple(sorted(b)) for b in bins]


def choose_partition(
    models: Sequence[str], priced: Sequence[PricedGroup], time_limit_s: float = 20.0
) -> list[PricedGroup]:
    """Exact minimum-pod cover of every model by disjoint priced groups (CP-SAT)."""
    solver_model = cp_model.CpModel()
    picks = [solver_model.NewBoolVar(f"group_{i}") for i in range(len(priced))]
    for name in models:
        solver_model.AddExactlyOne(p for p, g in zip(picks, priced, strict=True) if name in g.models)
    # Pods first; one pod type more costs less than one pod, so it only breaks ties.
    weight = len(models) + 1
    solver_model.Minimize(sum(p * (g.replicas * weight + 1) for p, g in zip(picks, priced, strict=True)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = 1
    status = solver.Solve(solver_model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return []
    return [g for p, g in zip(picks, priced, strict=True) if solver.Value(p)]
