"""The profiler through the real engine on the example repository."""

from __future__ import annotations

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
from packserve.planning.inputs import make_inputs, natural_jpeg
from packserve.planning.profile_schema import Profile
from packserve.planning.profiler import ProfileOptions, run_profile
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
    assert len(seen) == 6
    assert Profile.from_json(profile.to_json()) == profile


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
