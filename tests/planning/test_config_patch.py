from __future__ import annotations

import json
from pathlib import Path

import pytest

from packserve.errors import InvalidArgumentError
from packserve.planning.formats.config_patch import (
    apply_to_repository,
    load_patches,
    patch_pbtxt,
    patched_config_json,
)
from packserve.planning.formats.plan_schema import ModelPlan

CONFIG = """
name: "det"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [ { name: "x" data_type: TYPE_FP32 dims: [ 3 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 3 ] } ]
instance_group [ { count: 4 kind: KIND_GPU }, { count: 1 kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 100 preferred_batch_size: [ 4, 8 ] }
"""


def _setting(batching: bool = True) -> ModelPlan:
    return ModelPlan("det", 8, 2, 2500, 10.0, 5.0, 5.0, 100, 50.0, 40.0, 0.3, batching)


def test_patch_replaces_whole_fields_and_keeps_the_rest() -> None:
    text = patch_pbtxt(CONFIG, _setting().config_patch("KIND_GPU"), "det")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert config.max_batch_size == 8
    assert [(g.count, g.kind) for g in config.instance_group] == [
        (2, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    ]
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2500
    assert config.input[0].name == "x"


def test_non_batching_model_only_changes_instances() -> None:
    assert _setting(batching=False).config_patch("KIND_CPU") == {
        "instance_group": [{"count": 2, "kind": "KIND_CPU"}]
    }


def test_apply_to_repository(tmp_path: Path) -> None:
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "config.pbtxt").write_text(CONFIG)
    written = apply_to_repository(tmp_path, {"det": {"instance_group": [{"count": 3, "kind": "KIND_GPU"}]}})
    assert written == [tmp_path / "det" / "config.pbtxt"]
    assert "count: 3" in written[0].read_text()
    with pytest.raises(InvalidArgumentError, match=r"'other' has no config\.pbtxt"):
        apply_to_repository(tmp_path, {"other": {}})
    with pytest.raises(InvalidArgumentError, match="not a model config field"):
        apply_to_repository(tmp_path, {"det": {"bogus": 1}})


def test_patched_config_json_does_not_touch_the_original() -> None:
    original = {"name": "a", "instance_group": [{"count": 1}]}
    merged = patched_config_json(original, {"instance_group": [{"count": 2}]})
    assert merged["instance_group"] == [{"count": 2}]
    assert original["instance_group"] == [{"count": 1}]


def test_a_plan_file_is_a_patch_file(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps({"pods": [], "config_patches": {"det": {"max_batch_size": 4}}}))
    assert load_patches(plan_file) == {"det": {"max_batch_size": 4}}
