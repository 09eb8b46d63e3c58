from __future__ import annotations

from pathlib import Path

import pytest

from packserve.backends.registry import load_backend
from packserve.config.normalize import normalize_config
from packserve.config.parse import parse_config_text
from packserve.config.to_spec import build_model_spec, read_labels
from packserve.config.validate import validate_config
from packserve.errors import ConfigError
from packserve.model_spec import (
    BatchingPolicy,
    EnsembleStepSpec,
    InstanceGroupSpec,
    QueuePolicy,
    TensorSpec,
    VersionPolicy,
)
from packserve.types import DataType

CLASSIFIER = """
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "image" data_type: TYPE_UINT8 dims: [ -1, -1, 3 ] },
        { name: "scale" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } optional: true } ]
output [ { name: "probs" data_type: TYPE_FP32 dims: [ 3 ] label_filename: "labels.txt" },
         { name: "ids" data_type: TYPE_STRING dims: [ -1 ] } ]
dynamic_batching {
  preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 200 priority_levels: 2
  default_queue_policy { max_queue_size: 16 timeout_action: DELAY default_timeout_microseconds: 1000 }
  priority_queue_policy { key: 1 value { allow_timeout_override: true } }
}
instance_group [ { count: 2 kind: KIND_CPU } ]
version_policy { latest { num_versions: 2 } }
parameters [ { key: "threads" value { string_value: "1" } }, { key: "mode" value { string_value: "fast" } } ]
"""


def test_spec_mirrors_the_validated_config(tmp_path: Path) -> None:
    model_dir = tmp_path / "classifier"
    model_dir.mkdir()
    (model_dir / "labels.txt").write_text("cat\n dog \nbird\n\n")
    config = normalize_config(
        parse_config_text(CLASSIFIER), model_dir, None, available_gpus=(), backends=load_backend
    )
    validate_config(config, model_dir, available_gpus=())
    spec = build_model_spec(config, model_dir)

    assert (spec.name, spec.platform, spec.backend, spec.max_batch_size) == (
        "classifier",
        "onnxruntime_onnx",
        "onnxruntime",
        8,
    )
    assert spec.inputs == (
        TensorSpec("image", DataType.UINT8, (-1, -1, 3)),
        TensorSpec("scale", DataType.FP32, (1,), reshape=(), optional=True),
    )
    assert spec.outputs == (
        TensorSpec("probs", DataType.FP32, (3,), labels=("cat", "dog", "bird")),
        TensorSpec("ids", DataType.BYTES, (-1,)),
    )
    assert spec.dynamic_batching == BatchingPolicy(
        preferred_batch_sizes=(4,),
        max_queue_delay_us=200,
        priority_levels=2,
        default_priority_level=2,
        default_queue_policy=QueuePolicy("DELAY", 1000, False, 16),
        priority_queue_policy={1: QueuePolicy(allow_timeout_override=True)},
    )
    assert spec.instance_groups == (InstanceGroupSpec("classifier_0", 2, "KIND_CPU"),)
    assert spec.version_policy == VersionPolicy("latest", 2)
    assert spec.default_model_filename == "model.onnx"
    assert dict(spec.parameters) == {"mode": "fast", "threads": "1"}
    assert spec.ensemble_steps == ()
    assert not spec.is_ensemble


def test_ensemble_spec(tmp_path: Path) -> None:
    text = """platform: "ensemble" max_batch_size: 4
      input [ { name: "raw" data_type: TYPE_UINT8 dims: [ -1 ] } ]
      output [ { name: "out" data_type: TYPE_FP32 dims: [ 3 ] } ]
      ensemble_scheduling { step [ { model_name: "pre" input_map { key: "IMAGE" value: "raw" }
                                     output_map { key: "PIXELS" value: "px" } },
                                   { model_name: "cls" model_version: 2 input_map { key: "x" value: "px" }
                                     output_map { key: "y" value: "out" } } ] }"""
    model_dir = tmp_path / "pipe"
    model_dir.mkdir()
    config = normalize_config(
        parse_config_text(text), model_dir, None, available_gpus=(), backends=load_backend
    )
    validate_config(config, model_dir, available_gpus=())
    spec = build_model_spec(config, model_dir)
    assert spec.is_ensemble
    assert (spec.backend, spec.instance_groups, spec.dynamic_batching) == ("", (), None)
    assert spec.ensemble_steps == (
        EnsembleStepSpec("pre", -1, {"IMAGE": "raw"}, {"PIXELS": "px"}),
        EnsembleStepSpec("cls", 2, {"x": "px"}, {"y": "out"}),
    )


def test_read_labels_keeps_inner_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("a\n\nc\n\n\n")
    assert read_labels(path) == ("a", "", "c")


def test_unreadable_labels_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ConfigError, match="cannot read label file"):
        read_labels(path)
