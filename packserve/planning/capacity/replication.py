"""Nexus-style replication: a unit of models whose load saturates devices gets dedicated replicas
running it alone at saturation; only the residue of its load is packed with the other models.

A unit is what must share one process: the models of a pipeline (and of pipelines sharing a
model with it). Splitting below a unit would send a request's steps to other pods; keeping the
unit whole means every request still runs in one pod - it enters a dedicated pod or a mixed pod,
in proportion to the load each kind was planned for (`PricedGroup.share`), and never crosses.
Whole-pipeline replication (every replica carrying every model of its group) is the special case
of no dedicated replicas; the planner keeps whichever needs fewer pods.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import product

from packserve.planning.capacity.placement import PricedGroup

# Every combination of split / not split is tried up to this many splittable units; above it,
# each unit is split on its own when that alone saves pods (greedy).
_EXHAUSTIVE_UNITS = 4

# rates (calls/s per model, whole fleet) -> the chosen groups, or [] when none is feasible
Placement = Callable[[Mapping[str, float]], list[PricedGroup]]
# (unit, rates at one pod) -> the group priced at one pod, or None when one pod cannot take them
OnePod = Callable[[tuple[str, ...], Mapping[str, float]], PricedGroup | None]


@dataclass(frozen=True, slots=True)
class Split:
    unit: tuple[str, ...]
    replicas: int  # dedicated pods
    fraction: float  # of the unit's load they carry
    group: PricedGroup  # one dedicated pod's setting


def saturated_fraction(unit: tuple[str, ...], rates: Mapping[str, float], one_pod: OnePod) -> float:
    """The largest fraction of the unit's load one pod running it alone can carry (bisection;
    feasibility only worsens with more load)."""
    low, high = 0.0, 1.0
    if one_pod(unit, {m: rates[m] for m in unit}) is not None:
        return 1.0
    for _ in range(12):  # 1/4096 of the load: finer changes no pod count
        mid = (low + high) / 2
        if one_pod(unit, {m: rates[m] * mid for m in unit}) is not None:
            low = mid
        else:
            high = mid
    return low


def candidate_splits(
    units: Sequence[tuple[str, ...]], rates: Mapping[str, float], one_pod: OnePod
) -> list[Split]:
    """For each unit that saturates at least one pod alone: floor(load / saturation) dedicated pods."""
    splits = []
    for unit in units:
        fraction = saturated_fraction(unit, rates, one_pod)
        if fraction <= 0 or fraction >= 1:
            continue
        replicas = math.floor(1 / fraction + 1e-9)
        group = one_pod(unit, {m: rates[m] * fraction for m in unit})
        if replicas >= 1 and group is not None:
            splits.append(Split(unit, replicas, min(1.0, replicas * fraction), group))
    return splits


def replicate(
    units: Sequence[tuple[str, ...]], rates: Mapping[str, float], place: Placement, one_pod: OnePod
) -> list[PricedGroup]:
    """The fewest pods over: whole-unit placement, and placements where saturating units get
    dedicated pods and only their residue is placed with the rest."""
    best = place(rates)
    best_pods = _pods(best) if best else math.inf
    splits = candidate_splits(units, rates, one_pod)
    if len(splits) <= _EXHAUSTIVE_UNITS:
        choices: list[Sequence[Split]] = [
            [s for s, use in zip(splits, mask, strict=True) if use]
            for mask in product((False, True), repeat=len(splits))
            if any(mask)
        ]
    else:
        choices = [[s] for s in splits]
    for chosen in choices:
        groups = _with_splits(chosen, rates, place)
        if groups and _pods(groups) < best_pods:
            best, best_pods = groups, _pods(groups)
    return best


def _with_splits(splits: Sequence[Split], rates: Mapping[str, float], place: Placement) -> list[PricedGroup]:
    residue = dict(rates)
    dedicated = []
    for split in splits:
        for model in split.unit:
            residue[model] = rates[model] * (1 - split.fraction)
        shares = tuple((m, split.fraction) for m in split.unit)
        dedicated.append(replace(split.group, replicas=split.replicas, shares=shares, dedicated=True))
    # A unit whose load the dedicated pods carry entirely needs no residue pods.
    residue = {m: r for m, r in residue.items() if r > 1e-9 * max(1.0, rates[m])}
    placed = place(residue) if residue else []
    if residue and not placed:
        return []
    left = {m: 1 - split.fraction for split in splits for m in split.unit}
    return dedicated + [replace(g, shares=tuple((m, left[m]) for m in g.models if m in left)) for g in placed]


def _pods(groups: Sequence[PricedGroup]) -> int:
    return sum(g.replicas for g in groups)
