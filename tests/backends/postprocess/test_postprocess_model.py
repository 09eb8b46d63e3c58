from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from packserve.backends.base import ExecutionTimer, InstanceContext, ModelContext
from packserve.backends.postprocess import PostprocessModel
from packserve.backends.registry import load_backend
from packserve.errors import ConfigError, InvalidArgumentError
from packserve.messages import InferRequest, RequestedOutput
from packserve.model_spec import ModelSpec, TensorSpec, VersionPolicy
from packserve.types import DataType


class CountingTimer(ExecutionTimer):
    def __init__(self) -> None:
        self.marks: list[str] = []

    def inputs_ready(self) -> None:
        self.marks.append("inputs")

    def infer_done(self) -> None:
        self.marks.append("infer")


def context(tmp_path: Path, parameters: dict[str, str], max_batch_size: int = 0) -> ModelContext:
    spec = ModelSpec(
        name="angle_fix",
        platform="",
        backend="postprocess",
        max_batch_size=max_batch_size,
        inputs=(
            TensorSpec("QUADS", DataType.FP32, (-1, 8)),
            TensorSpec("ANGLE_PROBS", DataType.FP32, (-1, 2)),
        ),
        outputs=(TensorSpec("QUADS", DataType.FP32, (-1, 8)), TensorSpec("ANGLES", DataType.INT32, (-1,))),
        dynamic_batching=None,
        instance_groups=(),
        version_policy=VersionPolicy(),
        default_model_filename="",
        parameters=parameters,
    )
    return ModelContext(spec, None, tmp_path, tmp_path, 1, tmp_path)  # type: ignore[arg-type]


def test_registry_finds_the_backend() -> None:
    assert load_backend("postprocess") is PostprocessModel


def test_execute_returns_per_request_results_and_errors(tmp_path: Path) -> None:
    model = PostprocessModel(context(tmp_path, {"op": "text_angle_fix"}))
    instance = model.create_instance(InstanceContext("angle_fix_0_0", "KIND_CPU", 0))
    good = InferRequest(
        "angle_fix",
        {"QUADS": np.zeros((2, 8), np.float32), "ANGLE_PROBS": np.array([[1, 0], [0, 1]], np.float32)},
        outputs=[RequestedOutput("ANGLES")],
    )
    bad = InferRequest("angle_fix", {"QUADS": np.zeros((2, 8), np.float32), "ANGLE_PROBS": np.zeros((3, 2))})
    timer = CountingTimer()
    first, second = instance.execute([good, bad], timer)
    assert isinstance(first, dict) and list(first) == ["ANGLES"]
    assert first["ANGLES"].tolist() == [0, 180]
    assert isinstance(second, InvalidArgumentError) and "2 QUADS but 3" in str(second)
    assert timer.marks == ["inputs", "infer"]


@pytest.mark.parametrize(
    ("parameters", "max_batch_size", "message"),
    [
        ({}, 0, "needs parameter 'op'"),
        ({"op": "nope"}, 0, "unknown postprocess op 'nope'"),
        ({"op": "text_angle_fix"}, 4, "needs max_batch_size 0"),
        ({"op": "ctc_decode", "dictionary": "d.txt"}, 0, "has no input 'QUADS'"),
    ],
)
def test_bad_configs_name_the_problem(
    tmp_path: Path, parameters: dict[str, str], max_batch_size: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        PostprocessModel(context(tmp_path, parameters, max_batch_size))
