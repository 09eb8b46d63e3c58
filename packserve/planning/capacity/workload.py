"""From a traffic mix over pipelines to work per model: calls per request, rates and latency budgets.

A pipeline is an ensemble (expanded, nested ensembles included, to the models that do the work)
or a plain model called directly. Pure functions; no I/O.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass

from packserve.errors import InvalidArgumentError
from packserve.planning.formats.profile_schema import ModelProfile, Profile


@dataclass(frozen=True, slots=True)
class LeafStep:
    """One call to a model that does work; `after` are indices of steps whose outputs it reads."""

    model: str
    after: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    share: float  # fraction of all requests
    steps: tuple[LeafStep, ...]  # topologically ordered
    # Device time serving adds to every request beyond its models' work (front end, request decode
    # and response encode, the ensemble's scheduling): measured by serving the pipeline over HTTP
    # (`device_model.serving_overhead_ms`); 0 where not measured or not charged (GPU plans).
    overhead_ms: float = 0.0

    def calls(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for step in self.steps:
            counts[step.model] = counts.get(step.model, 0) + 1
        return counts


def expand_pipeline(profile: Profile, name: str, share: float) -> Pipeline:
    return Pipeline(name=name, share=share, steps=tuple(_expand(profile, profile.model(name), (), ())))


def _expand(
    profile: Profile, model: ModelProfile, after: tuple[int, ...], seen: tuple[str, ...]
) -> list[LeafStep]:
    """Leaf steps of `model`, each also waiting for `after` (offsets applied by the caller)."""
    if model.name in seen:
        raise InvalidArgumentError(f"ensemble '{model.name}' contains itself through {' -> '.join(seen)}")
    if not model.is_ensemble:
        return [LeafStep(model.name, after)]
    producers: dict[str, int] = {}
    for index, step in enumerate(model.steps):
        for tensor in step.outputs:
            producers[tensor] = index
    order = _topological_order(model, producers)
    leaves: list[LeafStep] = []
    # Ensemble step index -> indices (in `leaves`) of the leaf steps it expanded to.
    expanded: dict[int, tuple[int, ...]] = {}
    for index in order:
        step = model.steps[index]
        waits = set(after)
        for tensor in step.inputs:
            if tensor in producers:
                waits.update(expanded[producers[tensor]])
        offset = len(leaves)
        inner = _expand(profile, profile.model(step.model), (), (*seen, model.name))
        for leaf in inner:
            shifted = tuple(offset + i for i in leaf.after)
            # Inner steps with no inner predecessor wait for what the ensemble step waits for.
            leaves.append(LeafStep(leaf.model, shifted if shifted else tuple(sorted(waits))))
        expanded[index] = tuple(range(offset, len(leaves)))
    return leaves


def _topological_order(model: ModelProfile, producers: Mapping[str, int]) -> list[int]:
    """Step indices in waves (each wave: the steps whose producers ran in earlier waves, ascending)."""
    sorter = graphlib.TopologicalSorter(
        {i: {producers[t] for t in s.inputs if t in producers} for i, s in enumerate(model.steps)}
    )
    try:
        sorter.prepare()
    except graphlib.CycleError:
        raise InvalidArgumentError(f"ensemble '{model.name}' has a cycle between its steps") from None
    order: list[int] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def default_pipelines(profile: Profile) -> list[str]:
    """Top-level entry points: ensembles no other ensemble calls, and models no ensemble calls."""
    called = {step.model for m in profile.models for step in m.steps}
    return [m.name for m in profile.models if m.name not in called]


def build_pipelines(profile: Profile, mix: Mapping[str, float] | None) -> list[Pipeline]:
    if not profile.models:
        raise InvalidArgumentError("the profile holds no models")
    if not mix:
        names = default_pipelines(profile)
        mix = {name: 1.0 / len(names) for name in names}
    for name in mix:
        profile.model(name)  # raises naming the profiled models
    return [expand_pipeline(profile, name, share) for name, share in mix.items()]


def rates_per_model(pipelines: list[Pipeline], requests_per_s: float) -> dict[str, float]:
    """Calls per second each leaf model receives at the given pipeline request rate."""
    rates: dict[str, float] = {}
    for pipeline in pipelines:
        for model, count in pipeline.calls().items():
            rates[model] = rates.get(model, 0.0) + requests_per_s * pipeline.share * count
    return rates


def critical_path_ms(pipeline: Pipeline, weight_ms: Mapping[str, float]) -> float:
    finish: list[float] = []
    for step in pipeline.steps:
        start = max((finish[i] for i in step.after), default=0.0)
        finish.append(start + weight_ms[step.model])
    return max(finish, default=0.0)


def latency_budgets_ms(
    pipelines: list[Pipeline], slo_ms: float, fastest_ms: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Each stage's share of its pipeline's SLO: its own fastest batch latency plus an equal share
    of the slack (the SLO less the fastest critical path) per stage of the longest chain; a model
    in several pipelines keeps its tightest budget. Without `fastest_ms`, an equal split.

    Equal slack, not slack proportional to latency: models in one pod share a duty cycle, and a
    stage's worst case is that cycle plus its batch latency, so the cycle takes the slack; a stage
    given a thin slice would cap the cycle for every model. Its own latency comes first, so one
    slow stage (a text detector behind a fast decoder) does not make an attainable SLO look
    impossible. A pipeline's serving overhead comes off its SLO first: every request pays it.
    Raises when even the fastest path misses the SLO.
    """
    weights = dict(fastest_ms) if fastest_ms else {}
    budgets: dict[str, float] = {}
    for pipeline in pipelines:
        own = {step.model: weights.get(step.model, 0.0) for step in pipeline.steps}
        fastest_path = critical_path_ms(pipeline, own) + pipeline.overhead_ms
        if fastest_path > slo_ms:
            raise InvalidArgumentError(
                f"p99 {slo_ms:g} ms cannot be met: pipeline '{pipeline.name}' takes {fastest_path:.1f} ms "
                "along its longest chain even at each model's fastest measured batch latency "
                f"(serving overhead {pipeline.overhead_ms:.1f} ms included)"
            )
        depth = critical_path_ms(pipeline, {step.model: 1.0 for step in pipeline.steps})
        share = (slo_ms - fastest_path) / depth if depth > 0 else slo_ms
        for model in pipeline.calls():
            budget = own[model] + share
            budgets[model] = min(budgets.get(model, budget), budget)
    return budgets
