"""The planning commands through typer: bad arguments give exit code 2 and say why, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from planning_synthetic import LinearModel, linear_profile
from typer.testing import CliRunner

from packserve.cli.planning_commands import register


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    application = typer.Typer()
    register(application)
    return application


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    path = tmp_path / "profile.json"
    linear_profile([LinearModel("a", 3, 0.5, 800), LinearModel("b", 4, 0.3, 800)]).save(path)
    return path


def _text(output: str) -> str:
    """The output with rich's box drawing and line wrapping taken out."""
    return " ".join(output.replace("│", " ").split())


def _plan_args(profile: Path, out: Path, **overrides: str) -> list[str]:
    args = {
        "--profile": str(profile),
        "--load": "25M/day",
        "--p99": "100ms",
        "--gpu-memory": "16GiB",
        "--out": str(out),
    }
    args.update(overrides)
    return ["plan", *[x for pair in args.items() for x in pair], "--simulation-seconds", "12"]


def test_plan_then_deploy(app: typer.Typer, profile_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, _plan_args(profile_file, tmp_path / "plan"))
    assert result.exit_code == 0, result.output
    assert "devices at peak" in result.output
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert set(plan["config_patches"]) == {"a", "b"}
    for name in (
        "report.md",
        "config_patch.pbtxt",
        "gpus_before_after.png",
        "latency_cdf.png",
        "utilisation.png",
    ):
        assert (tmp_path / "plan" / name).stat().st_size > 0
    assert "Simulation at peak" in (tmp_path / "plan" / "report.md").read_text()
    deployed = runner.invoke(
        app,
        [
            "deploy",
            "k8s",
            "--plan",
            str(tmp_path / "plan" / "plan.json"),
            "--image",
            "img:1",
            "--repository-volume",
            "pvc",
            "--out",
            str(tmp_path / "k8s"),
        ],
    )
    assert deployed.exit_code == 0, deployed.output
    assert (tmp_path / "k8s" / "packserve.yaml").is_file()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"--load": "lots"}, "25M/day"),
        ({"--p99": "1ms"}, "cannot be met"),
        ({"--gpu-memory": "100MiB"}, "needs"),
        ({"--mix": "ghost=1"}, "ghost"),
        ({"--gpu-memory": "sixteen"}, "16GiB"),
    ],
)
def test_plan_bad_arguments(
    app: typer.Typer, profile_file: Path, tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    result = CliRunner().invoke(app, _plan_args(profile_file, tmp_path / "out", **overrides))
    assert result.exit_code == 2
    assert message in _text(result.output)
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_plan_missing_profile(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, _plan_args(tmp_path / "absent.json", tmp_path / "out"))
    assert result.exit_code == 2
    assert "does not exist" in _text(result.output)


def test_deploy_needs_one_repository_source(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", "k8s", "--plan", str(tmp_path / "p.json"), "--image", "i"])
    assert result.exit_code == 2
