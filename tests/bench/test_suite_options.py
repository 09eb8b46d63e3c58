"""The suite's command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.suite.options import parse_options, parse_shape, perf_analyzer_shapes
from packserve.errors import InvalidArgumentError


def test_defaults_are_the_short_run() -> None:
    options = parse_options([])
    assert options.models == ("simple", "image_classifier")
    assert options.concurrency == (1, 8, 32)
    assert options.protocols == ("http", "grpc")
    assert options.out_dir == Path("bench/results/suite")
    assert options.model_repository is None


def test_lists_and_shapes_are_parsed() -> None:
    options = parse_options(
        ["--models", "a, b", "--concurrency", "8,1,8", "--protocols", "grpc", "--shape", "a/IN:3,5"]
    )
    assert options.models == ("a", "b")
    assert options.concurrency == (1, 8)
    assert options.protocols == ("grpc",)
    assert options.shapes == {"a": {"IN": (3, 5)}}
    assert perf_analyzer_shapes(options.shapes["a"]) == ("IN:3,5",)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--protocols", "http,udp"], "--protocols"),
        (["--concurrency", "0,4"], "--concurrency"),
        (["--concurrency", "four"], "--concurrency"),
        (["--models", ","], "--models"),
        (["--raw-windows", "0"], "--raw-windows"),
        (["--max-trials", "2"], "--max-trials"),
    ],
)
def test_bad_options_are_named(argv: list[str], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        parse_options(argv)


@pytest.mark.parametrize("entry", ["IN:3,4", "model/IN", "/IN:3", "model/IN:0"])
def test_bad_shape_is_refused(entry: str) -> None:
    with pytest.raises(InvalidArgumentError, match="--shape"):
        parse_shape(entry)


def test_main_reports_bad_input_as_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.suite.__main__ import main

    assert main(["--protocols", "udp"]) == 1
    assert "--protocols must be among http, grpc" in capsys.readouterr().out
    missing_binary = tmp_path / "no_perf_analyzer"
    assert main(["--model-repository", str(tmp_path), "--perf-analyzer", str(missing_binary)]) == 1
    assert "perf_analyzer not found" in capsys.readouterr().out
    binary = tmp_path / "perf_analyzer"
    binary.write_text("#!/bin/sh\n")
    args = ["--model-repository", str(tmp_path), "--models", "nope", "--perf-analyzer", str(binary)]
    assert main([*args, "--out", str(tmp_path / "out")]) == 1
    assert "model 'nope' is not in repository" in capsys.readouterr().out
