from __future__ import annotations

from pathlib import Path

import pytest

from packserve.errors import InvalidArgumentError
from packserve.planning.capacity.planner import PlanOptions, plan
from packserve.planning.capacity.workload import (
    build_pipelines,
    critical_path_ms,
    latency_budgets_ms,
    rates_per_model,
)
from packserve.planning.formats.plan_schema import Plan
from packserve.planning.formats.profile_schema import EnsembleStep, ModelProfile, Profile
from packserve.planning.formats.units import parse_duration_ms, parse_load, parse_memory_bytes, parse_mix
from tests.planning.planning_synthetic import LinearModel, linear_profile


def test_profile_and_plan_round_trip(tmp_path: Path) -> None:
    profile = linear_profile([LinearModel("a", 2, 1, 500)], ensembles={"e": ["a", "a"]})
    profile.save(tmp_path / "p.json")
    assert Profile.load(tmp_path / "p.json") == profile
    result = plan(profile, PlanOptions(100, 100, 8 * 1024**3))
    result.save(tmp_path / "plan.json")
    assert Plan.load(tmp_path / "plan.json") == result


def test_malformed_files_say_so(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="not valid JSON"):
        Profile.load(tmp_path / "bad.json")
    (tmp_path / "v9.json").write_text('{"schema_version": 9}')
    with pytest.raises(InvalidArgumentError, match="schema_version 9"):
        Profile.load(tmp_path / "v9.json")


def test_nested_ensemble_expands_to_leaf_calls_in_order() -> None:
    leaves = [LinearModel(n, 1, 1, 100) for n in ("pre", "det", "cls")]
    base = linear_profile(leaves)
    inner = ModelProfile(
        "inner",
        "ensemble",
        "",
        8,
        (),
        (EnsembleStep("det", ("img",), ("boxes",)), EnsembleStep("cls", ("boxes",), ("labels",))),
    )
    # Listed out of order: the expansion must follow the tensors, not the config order.
    outer = ModelProfile(
        "outer",
        "ensemble",
        "",
        8,
        (),
        (EnsembleStep("inner", ("img",), ("labels",)), EnsembleStep("pre", ("raw",), ("img",))),
    )
    profile = Profile("cpu", "test", (*base.models, inner, outer))
    pipelines = build_pipelines(profile, None)
    assert [p.name for p in pipelines] == ["outer"]
    steps = pipelines[0].steps
    assert [s.model for s in steps] == ["pre", "det", "cls"]
    assert steps[1].after == (0,) and steps[2].after == (1,)
    assert rates_per_model(pipelines, 10.0) == {"pre": 10.0, "det": 10.0, "cls": 10.0}
    weights = {"pre": 1.0, "det": 3.0, "cls": 1.0}
    assert critical_path_ms(pipelines[0], weights) == 5.0
    assert latency_budgets_ms(pipelines, 99.0) == {"pre": 33.0, "det": 33.0, "cls": 33.0}


def test_cycle_is_reported() -> None:
    leaf = linear_profile([LinearModel("a", 1, 1, 1)])
    loop = ModelProfile(
        "e", "ensemble", "", 8, (), (EnsembleStep("a", ("x",), ("y",)), EnsembleStep("a", ("y",), ("x",)))
    )
    with pytest.raises(InvalidArgumentError, match="cycle"):
        build_pipelines(Profile("cpu", "t", (*leaf.models, loop)), None)


def test_units() -> None:
    assert parse_load("25M/day") == pytest.approx(25e6 / 86400)
    assert parse_load("300/s") == 300
    assert parse_load("1.5k/min") == 25
    assert parse_duration_ms("0.25s") == 250
    assert parse_memory_bytes("16GiB") == 16 * 1024**3
    assert parse_memory_bytes("16GB") == 16 * 10**9
    assert parse_mix(["a=3", "b=1"]) == {"a": 0.75, "b": 0.25}
    for bad in ("25M", "x/s", "10/fortnight", "0/s"):
        with pytest.raises(InvalidArgumentError):
            parse_load(bad)
    with pytest.raises(InvalidArgumentError):
        parse_mix(["a"])
