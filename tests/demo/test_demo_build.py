from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from packserve.demo.build import ENSEMBLE, build_vision_stack, main

pytestmark = pytest.mark.slow


def read(root: Path, name: str) -> pb.ModelConfig:
    return text_format.Parse((root / name / "config.pbtxt").read_text(), pb.ModelConfig())


def test_build_writes_a_complete_repository(tmp_path: Path) -> None:
    root = build_vision_stack(tmp_path / "repo", progress=False)
    stack = read(root, ENSEMBLE)
    steps = [step.model_name for step in stack.ensemble_scheduling.step]
    assert {"vision_preprocess", "retinaface", "face_landmarks", "text_read", "orientation"} <= set(steps)
    for name in steps:
        config = read(root, name)
        assert config.name == name
        if config.platform == "onnxruntime_onnx":
            assert (root / name / "1" / "model.onnx").stat().st_size > 100_000
            assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    dictionary = (root / "text_decode" / "1" / "dictionary.txt").read_text(encoding="utf-8").splitlines()
    assert len(dictionary) == 6623
    produced = {value for step in stack.ensemble_scheduling.step for value in step.output_map.values()}
    assert {output.name for output in stack.output} <= produced


def test_cli_needs_a_path() -> None:
    assert main([]) == 2
