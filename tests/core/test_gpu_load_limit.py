"""tritonserver's --model-load-gpu-limit: a model with an instance on a GPU whose memory in use is
above the limit does not load (before anything is allocated); other models and GPUs are untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from packserve.config import normalize, validate
from packserve.core.engine import Engine, EngineOptions
from packserve.core.gpu_load_limit import GpuLoadLimits, parse_limit
from packserve.errors import ModelLoadError
from packserve.examples.simple_repository import build_simple_repository


@pytest.mark.parametrize(
    ("text", "expected"), [("0:0.8", (0, 0.8)), ("3:1", (3, 1.0)), ("1:0.05", (1, 0.05))]
)
def test_parse(text: str, expected: tuple[int, float]) -> None:
    assert parse_limit(text) == expected


@pytest.mark.parametrize("text", ["0.8", "a:0.5", "-1:0.5", "0:0", "0:1.5", "0:", ":0.5"])
def test_parse_refuses_what_is_not_device_and_fraction(text: str) -> None:
    with pytest.raises(ValueError, match="<device id>:<fraction"):
        parse_limit(text)


def test_check_compares_memory_in_use_with_the_limit_per_device() -> None:
    asked: list[int] = []

    def in_use(device: int) -> tuple[int, int]:
        asked.append(device)
        return {0: (79, 100), 1: (81, 100)}[device]

    limits = GpuLoadLimits({0: 0.8, 1: 0.8}, in_use)
    limits.check("m", [0, 0])
    with pytest.raises(ModelLoadError, match=r"memory limit set for GPU 1 has exceeded: 81 of 100 bytes"):
        limits.check("m", [1, 0])
    limits.check("m", [2])  # no limit on GPU 2: not even read
    assert asked == [0, 0, 1]


def test_an_unreadable_gpu_refuses_the_load_rather_than_ignoring_the_limit() -> None:
    def unreadable(device: int) -> tuple[int, int]:
        raise ModelLoadError(f"cannot read the memory in use on GPU {device} (no driver)")

    with pytest.raises(
        ModelLoadError, match=r"--model-load-gpu-limit 0:0.5: cannot read the memory in use on GPU 0"
    ):
        GpuLoadLimits({0: 0.5}, unreadable).check("m", [0])


async def test_a_model_on_a_full_gpu_is_unavailable_and_the_others_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This machine has no GPU: the config checks are told of two, the limit check stops the load
    # before any backend would look for them.
    for module in (normalize, validate):
        monkeypatch.setattr(module, "visible_gpus", lambda: (0, 1))
    example = build_simple_repository(tmp_path / "example")
    repository = tmp_path / "repository"
    repository.mkdir()
    shutil.copytree(example / "simple", repository / "simple")
    shutil.copytree(example / "simple", repository / "simple_gpu")
    config = (repository / "simple_gpu" / "config.pbtxt").read_text()
    config = config.replace('name: "simple"', 'name: "simple_gpu"')
    config = config.replace(
        "instance_group [ { count: 2, kind: KIND_CPU } ]", "instance_group [ { kind: KIND_GPU gpus: [1] } ]"
    )
    (repository / "simple_gpu" / "config.pbtxt").write_text(config)
    limits = GpuLoadLimits({1: 0.5}, lambda device: (60, 100))
    engine = await Engine.start(EngineOptions(repository, gpu_load_limits=limits))
    try:
        index = {entry.name: entry for entry in engine.repository_index()}
        assert index["simple"].state == "READY"
        assert index["simple_gpu"].state == "UNAVAILABLE"
        assert "memory limit set for GPU 1 has exceeded: 60 of 100 bytes" in index["simple_gpu"].reason
    finally:
        await engine.shutdown(0)
