"""The planning commands through typer: bad arguments give exit code 2 and say why, no traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from packserve.cli.planning_commands import register
from packserve.errors import PackserveError
from tests.planning.planning_synthetic import LinearModel, linear_profile


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


def _one_line_usage_error(result: Any, argument: str) -> str:
    """Exit 2, one line naming the argument, no traceback; returns the line."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert argument in lines[0]
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    return lines[0]


@pytest.mark.parametrize(
    ("overrides", "argument", "message"),
    [
        ({"--load": "1e400/s"}, "--load", "finite"),
        ({"--load": "1e12/s"}, "--load", "refuses more than 100,000"),
        ({"--peak-factor": "nan"}, "--peak-factor", "finite"),
        ({"--peak-factor": "inf"}, "--peak-factor", "finite"),
        ({"--peak-factor": "0.5"}, "--peak-factor", "at least 1"),
        ({"--p99": "1ms"}, "p99", "cannot be met"),
    ],
)
def test_plan_bad_numbers_one_line(
    app: typer.Typer,
    profile_file: Path,
    tmp_path: Path,
    overrides: dict[str, str],
    argument: str,
    message: str,
) -> None:
    line = _one_line_usage_error(
        CliRunner().invoke(app, _plan_args(profile_file, tmp_path / "out", **overrides)), argument
    )
    assert message in line


def test_plan_bad_profile_files_one_line(app: typer.Typer, tmp_path: Path) -> None:
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2, 3]")
    binary = tmp_path / "binary.json"
    binary.write_bytes(bytes(range(256)) * 4)
    for path, message in ((listed, "JSON list"), (binary, "not text"), (tmp_path, "folder")):
        line = _one_line_usage_error(CliRunner().invoke(app, _plan_args(path, tmp_path / "out")), str(path))
        assert message in line


def test_plan_out_naming_a_file_one_line(app: typer.Typer, profile_file: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken.txt"
    taken.write_text("x")
    line = _one_line_usage_error(CliRunner().invoke(app, _plan_args(profile_file, taken)), "--out")
    assert "not a folder" in line


def test_profile_on_a_missing_gpu_one_line(app: typer.Typer, tmp_path: Path) -> None:
    from packserve.planning.profiling.device_memory import open_device_memory

    try:
        open_device_memory("cuda:0")
    except PackserveError:
        pass
    else:
        pytest.skip("a GPU is visible here")
    result = CliRunner().invoke(
        app,
        [
            "profile",
            "--model-repository",
            str(tmp_path),
            "--device",
            "cuda:0",
            "--out",
            str(tmp_path / "p.json"),
        ],
    )
    assert "no CUDA GPU 0" in _one_line_usage_error(result, "--device")


def test_plan_summary_shows_bound_packed_and_baseline(
    app: typer.Typer, profile_file: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, _plan_args(profile_file, tmp_path / "plan"))
    assert result.exit_code == 0, result.output
    assert "lower bound" in result.output and "one model per pod" in result.output
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    rows = plan["comparison"]
    assert rows["packed"]["devices"] <= rows["baseline"]["devices"]
    assert rows["lower_bound"]["devices"] <= rows["packed"]["devices"]
    report = (tmp_path / "plan" / "report.md").read_text()
    assert "lower bound" in report and "Search for the baseline fleet" in report
