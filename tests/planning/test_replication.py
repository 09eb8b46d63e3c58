"""Per-model (Nexus-style) replication: a saturating model gets dedicated pods and only its residue
is packed with the others - checked against brute force on small synthetic cases."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import product

import pytest

from packserve.planning.capacity.plan_check import check_plan, plan_pipelines
from packserve.planning.capacity.planner import PlanOptions, _prepare, _price, plan
from packserve.planning.capacity.replication import saturated_fraction
from packserve.planning.formats.plan_schema import gpus
from packserve.planning.formats.profile_schema import Profile
from tests.planning.planning_synthetic import LinearModel, linear_profile

GIB = 1024**3
# One heavy model (a) and two light ones (b, c), each called directly: a dominates the load.
DOMINANT = [LinearModel("a", 6, 1.0, 1000), LinearModel("b", 4, 0.3, 1000), LinearModel("c", 5, 0.3, 1000)]
MIX = {"a": 0.8, "b": 0.1, "c": 0.1}


def _partitions(items: list[str]) -> list[list[tuple[str, ...]]]:
    if not items:
        return [[]]
    first, rest = items[0], items[1:]
    found = []
    for partition in _partitions(rest):
        found.append([(first,), *partition])
        for i, block in enumerate(partition):
            found.append([*partition[:i], tuple(sorted((first, *block))), *partition[i + 1 :]])
    return found


def _brute_force(profile: Profile, options: PlanOptions) -> int:
    """Every number of dedicated (saturated) pods per model, every set partition of the residue."""
    prepared = _prepare(profile, options)
    models = sorted(prepared.rates)

    def one_pod(unit: tuple[str, ...], rates: dict[str, float]) -> object | None:
        found = _price(prepared, unit, rates)
        return found if found is not None and found.replicas == 1 else None

    saturation = {m: saturated_fraction((m,), prepared.rates, one_pod) for m in models}  # type: ignore[arg-type]
    counts = [
        range(0, math.floor(1 / saturation[m] + 1e-9) + 1) if saturation[m] < 1 else [0] for m in models
    ]
    best = math.inf
    for dedicated in product(*counts):
        residue = {
            m: prepared.rates[m] * (1 - k * saturation[m]) for m, k in zip(models, dedicated, strict=True)
        }
        left = [m for m in models if residue[m] > 1e-9 * prepared.rates[m]]
        for partition in _partitions(left):
            priced = [_price(prepared, group, residue) for group in partition]
            if all(p is not None for p in priced):
                best = min(best, sum(dedicated) + sum(p.replicas for p in priced if p is not None))
    return int(best)


@pytest.mark.parametrize("load", [600.0, 900.0, 1300.0])
def test_per_model_replication_matches_brute_force(load: float) -> None:
    profile = linear_profile(DOMINANT)
    options = PlanOptions(load, 60, 8 * GIB, peak_factor=1.0, mix=MIX, memory_reserve=0)
    assert gpus(plan(profile, options).pods) == _brute_force(profile, options)


def test_dedicated_replicas_beat_whole_group_replication_where_one_model_dominates() -> None:
    profile = linear_profile(DOMINANT)
    options = PlanOptions(900, 60, 8 * GIB, peak_factor=1.0, mix=MIX, memory_reserve=0)
    split = plan(profile, options)
    whole = plan(profile, replace(options, per_model_replication=False))
    assert gpus(split.pods) < gpus(whole.pods)
    dedicated = [p for p in split.pods if p.name.endswith("-dedicated")]
    assert [m.name for p in dedicated for m in p.models] == ["a"]
    shares = [m.share for p in split.pods for m in p.models if m.name == "a"]
    assert sum(shares) == pytest.approx(1.0) and len(shares) == 2
    # Each kind gets its own config patch; the k8s Deployment says which share it takes.
    assert set(split.to_json()["pod_config_patches"]) == {p.name for p in split.pods}
    # The split fleet meets the settings' own latency in simulation: requests for a are split
    # between the kinds in proportion to their shares, each request served whole in one pod.
    summary, _ = check_plan(
        split, profile, plan_pipelines(split, profile), duration_s=20.0, kinds=("poisson",)
    )[0]
    assert summary.requests > 10_000
    busy = summary.utilisation
    assert all(0.2 < u < 1.0 for u in busy.values()), busy
    assert summary.meets_slo, summary.p99_ms


def test_each_pod_kind_is_its_own_deployment_with_its_share_and_patch() -> None:
    import json

    from packserve.planning.output.k8s import DeployOptions, build_manifests

    profile = linear_profile(DOMINANT)
    split = plan(profile, PlanOptions(900, 60, 8 * GIB, peak_factor=1.0, mix=MIX, memory_reserve=0))
    manifests = build_manifests(split, DeployOptions(image="img:1", repository_volume="pvc"))
    deployments = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}
    assert len(deployments) == len(split.pods) == 2
    shares = {
        name: json.loads(d["metadata"].get("annotations", {}).get("packserve.io/traffic-share", "{}"))
        for name, d in deployments.items()
    }
    assert sorted(round(s["a"], 6) for s in shares.values()) == sorted(
        round(m.share, 6) for p in split.pods for m in p.models if m.name == "a"
    )
    patches = {
        m["metadata"]["name"]: json.loads(m["data"]["config-patch.json"])
        for m in manifests
        if m["kind"] == "ConfigMap"
    }
    assert any(set(p) == {"a"} for p in patches.values()) and any(
        set(p) == {"a", "b", "c"} for p in patches.values()
    )
