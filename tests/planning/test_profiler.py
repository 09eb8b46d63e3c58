"""The profiler through the real engine on the example repository."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from packserve.cli.planning_commands import register
from packserve.core.views import ModelMetadata, TensorMetadata
from packserve.errors import InvalidArgumentError
from packserve.examples.simple_repository import build_simple_repository
from packserve.planning.formats.profile_schema import Profile
from packserve.planning.profiling.inputs import make_inputs, natural_jpeg
from packserve.planning.profiling.profiler import ProfileOptions, run_profile
from packserve.types import DataType


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    return build_simple_repository(tmp_path / "repo")


async def test_profiles_models_and_ensembles_from_server_statistics(repository: Path) -> None:
    options = ProfileOptions(
        repository,
        models=("simple", "simple_ensemble"),
        batch_sizes=(1, 4, 64),
        instances=(1, 2),
        requests_per_point=8,
        min_seconds_per_point=0.0,
        warmup_requests=1,
        served_requests=6,
    )
    seen: list[str] = []
    profile = await run_profile(options, seen.append)
    simple = profile.model("simple")
    # max_batch_size 8 caps the sizes; every (batch, instances) pair is measured once.
    assert sorted((p.batch_size, p.instances) for p in simple.points) == [(1, 1), (1, 2), (4, 1), (4, 2)]
    for point in simple.points:
        assert point.throughput_per_s > 0
        assert point.compute_infer_ms > 0  # read from the server's statistics
        assert point.latency_p99_ms >= point.latency_p50_ms > 0
    ensemble = profile.model("simple_ensemble")
    assert ensemble.is_ensemble
    assert [s.model for s in ensemble.steps] == ["simple", "simple"]
    assert ensemble.steps[1].inputs == ("sum", "difference")
    # The ensemble was also served through the real HTTP front end, the client's CPU kept apart.
    assert simple.served is None
    assert ensemble.served is not None
    assert ensemble.served.requests == options.served_requests
    assert ensemble.served.cpu_ms > 0 and ensemble.served.client_cpu_ms > 0
    assert ensemble.served.latency_p50_ms > 0
    assert seen[-1] == "simple_ensemble served over HTTP"
    assert len(seen) == 7
    assert Profile.from_json(profile.to_json()) == profile


async def test_served_measurement_can_be_left_out_and_is_checked(repository: Path) -> None:
    options = ProfileOptions(
        repository,
        models=("simple_ensemble",),
        batch_sizes=(1,),
        instances=(1,),
        requests_per_point=2,
        min_seconds_per_point=0.0,
        warmup_requests=0,
        served_requests=0,
    )
    assert (await run_profile(options)).model("simple_ensemble").served is None
    with pytest.raises(InvalidArgumentError, match="served requests"):
        await run_profile(replace(options, served_requests=-1))


async def test_unknown_model_is_named(repository: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="'ghost'"):
        await run_profile(ProfileOptions(repository, models=("ghost",)))


def test_cli_profile_writes_json_and_plots(repository: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    out = tmp_path / "profile.json"
    result = CliRunner().invoke(
        app,
        [
            "profile",
            "--model-repository",
            str(repository),
            "--models",
            "classifier",
            "--batch-sizes",
            "1,2",
            "--instances",
            "1",
            "--requests",
            "5",
            "--out",
            str(out),
            "--plots",
            str(tmp_path / "plots"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert Profile.load(out).model("classifier").points
    assert (tmp_path / "plots" / "profile_classifier.png").stat().st_size > 0
    bad = CliRunner().invoke(app, ["profile", "--model-repository", str(repository), "--batch-sizes", "0,x"])
    assert bad.exit_code == 2


def test_inputs_follow_metadata_and_bytes_are_real_jpegs() -> None:
    metadata = ModelMetadata(
        "m",
        ("1",),
        "image",
        (TensorMetadata("img", DataType.BYTES, (-1, 1)), TensorMetadata("x", DataType.FP16, (-1, 3, -1))),
        (),
    )
    inputs = make_inputs(metadata, 4, batching=True)
    assert inputs["img"].shape == (4, 1) and inputs["img"].dtype == np.object_
    assert inputs["x"].shape == (4, 3, 16) and inputs["x"].dtype == np.float16
    import io

    image = Image.open(io.BytesIO(natural_jpeg(320, 240)))
    assert image.format == "JPEG" and image.size == (320, 240)


async def test_ensemble_steps_are_profiled_with_traced_inputs_and_cpu_time(repository: Path) -> None:
    from packserve.core.engine import Engine, EngineOptions
    from packserve.planning.profiling.traced_inputs import trace_ensemble_inputs

    engine = await Engine.start(
        EngineOptions(repository, "explicit", load_models=("simple", "simple_ensemble"))
    )
    try:
        inputs = make_inputs(engine.model_metadata("simple_ensemble"), 1, True, seed=5)
        traced = await trace_ensemble_inputs(engine, "simple_ensemble", inputs)
    finally:
        await engine.shutdown(drain_timeout_s=5.0)
    # The first step sees the ensemble's own inputs, under the step's input names.
    assert sorted(traced) == ["simple"]
    for array in traced["simple"].values():
        assert any(np.array_equal(array, given) for given in inputs.values())

    options = ProfileOptions(
        repository,
        models=("simple", "simple_ensemble"),
        batch_sizes=(1, 2),
        instances=(1,),
        requests_per_point=8,
        min_seconds_per_point=0.0,
        warmup_requests=1,
    )
    profile = await run_profile(options)
    assert profile.cpu_cores >= 1
    assert all(p.cpu_ms > 0 for m in profile.models for p in m.points)


async def test_a_pipeline_by_name_brings_the_models_it_calls(repository: Path) -> None:
    options = ProfileOptions(
        repository,
        models=("simple_ensemble",),
        batch_sizes=(1,),
        instances=(1,),
        requests_per_point=4,
        min_seconds_per_point=0.0,
        warmup_requests=1,
    )
    profile = await run_profile(options)
    assert sorted(profile.names()) == ["simple", "simple_ensemble"]


async def test_unreadable_sample_image_is_named(repository: Path, tmp_path: Path) -> None:
    options = ProfileOptions(repository, models=("simple_ensemble",), sample_image=tmp_path / "none.jpg")
    with pytest.raises(InvalidArgumentError, match=r"none\.jpg"):
        await run_profile(options)
