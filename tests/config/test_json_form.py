from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from tritonclient.grpc.model_config_pb2 import ModelConfig

from packserve.backends.registry import load_backend
from packserve.config.loader import load_model_config
from packserve.config.normalize import normalize_config
from packserve.config.parse import parse_config_json, parse_config_text
from packserve.model_config_json import config_to_json
from tests.fakes.config import ModelFolder

FULL = """
name: "m"
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_INT32 dims: [ 16, -1 ] reshape { shape: [ 4, 4, -1 ] } } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 10 ] } ]
version_policy { specific { versions: [ 1, 3 ] } }
dynamic_batching {
  max_queue_delay_microseconds: 100 priority_levels: 2 default_priority_level: 2
  default_queue_policy { default_timeout_microseconds: 7 }
  priority_queue_policy { key: 1 value { default_timeout_microseconds: 9 } }
}
parameters { key: "k" value { string_value: "v" } }
model_warmup [ { name: "w" batch_size: 1
                 inputs { key: "x" value { data_type: TYPE_INT32 dims: [ 16, 2 ] zero_data: true } } } ]
"""


def _normalized(tmp_path: Path, text: str) -> ModelConfig:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    return normalize_config(
        parse_config_text(text), model_dir, None, available_gpus=(), backends=load_backend
    )


def test_triton_field_names_types_and_defaults(tmp_path: Path) -> None:
    document = config_to_json(_normalized(tmp_path, FULL))
    assert document["max_batch_size"] == 8
    assert document["input"][0] == {
        "name": "x",
        "data_type": "TYPE_INT32",
        "format": "FORMAT_NONE",
        "dims": [16, -1],
        "reshape": {"shape": [4, 4, -1]},
        "is_shape_tensor": False,
        "allow_ragged_batch": False,
        "optional": False,
        "is_non_linear_format_io": False,
    }
    assert document["output"][0]["label_filename"] == ""
    assert document["version_policy"] == {"specific": {"versions": [1, 3]}}
    assert document["instance_group"] == [
        {
            "name": "m",
            "kind": "KIND_CPU",
            "count": 1,
            "gpus": [],
            "secondary_devices": [],
            "profile": [],
            "passive": False,
            "host_policy": "",
        }
    ]
    batching = document["dynamic_batching"]
    assert batching["max_queue_delay_microseconds"] == 100
    assert batching["preferred_batch_size"] == [8]
    assert batching["default_queue_policy"]["default_timeout_microseconds"] == 7
    assert batching["priority_queue_policy"] == {
        "1": {
            "timeout_action": "REJECT",
            "default_timeout_microseconds": 9,
            "allow_timeout_override": False,
            "max_queue_size": 0,
        }
    }
    assert document["model_warmup"][0]["inputs"]["x"]["dims"] == [16, 2]
    assert document["optimization"]["input_pinned_memory"] == {"enable": True}
    assert document["parameters"] == {"k": {"string_value": "v"}}
    for empty_list in ("batch_input", "batch_output"):
        assert document[empty_list] == []
    for empty_map in ("cc_model_filenames", "metric_tags"):
        assert document[empty_map] == {}
    assert document["runtime"] == ""
    assert "sequence_batching" not in document  # unset messages are not printed, as in Triton


def test_fields_come_in_declaration_order(tmp_path: Path) -> None:
    keys = list(config_to_json(_normalized(tmp_path, FULL)))
    declared = [field.name for field in ModelConfig.DESCRIPTOR.fields]
    assert keys == [name for name in declared if name in keys]
    assert keys[:6] == ["name", "platform", "backend", "runtime", "version_policy", "max_batch_size"]


def _repeated(field: FieldDescriptor) -> bool:
    """protobuf 5.29+ says `is_repeated` (a property; `label` is deprecated); older ones only `label`."""
    is_repeated = getattr(field, "is_repeated", None)
    if is_repeated is None:
        return bool(field.label == FieldDescriptor.LABEL_REPEATED)
    return bool(is_repeated() if callable(is_repeated) else is_repeated)


def _int64_fields_hold_numbers(value: Any, descriptor: Descriptor) -> int:
    """Count 64-bit fields below `value`, asserting every one of them is a JSON number."""
    checked = 0
    for field in descriptor.fields:
        if field.name not in value:
            continue
        item = value[field.name]
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                for entry in item.values():
                    checked += _int64_fields_hold_numbers(entry, value_field.message_type)
            continue
        items = item if _repeated(field) else [item]
        for element in items:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                checked += _int64_fields_hold_numbers(element, field.message_type)
            elif field.cpp_type in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64):
                assert isinstance(element, int), f"{field.full_name} is {element!r}"
                checked += 1
    return checked


def test_every_int64_field_is_a_json_number(tmp_path: Path) -> None:
    config = _normalized(tmp_path, FULL)
    ensemble = parse_config_text(
        'name: "e" platform: "ensemble" ensemble_scheduling { step [ { model_name: "a" model_version: 7 } ] }'
    )
    sequence = parse_config_text("sequence_batching { max_sequence_idle_microseconds: 5 oldest { } }")
    checked = 0
    for message in (config, ensemble, sequence):
        document = json.loads(json.dumps(config_to_json(message)))
        checked += _int64_fields_hold_numbers(document, ModelConfig.DESCRIPTOR)
    assert checked >= 15
    assert config_to_json(ensemble)["ensemble_scheduling"]["step"][0]["model_version"] == 7


def test_json_form_round_trips(tmp_path: Path) -> None:
    config = _normalized(tmp_path, FULL)
    assert parse_config_json(json.dumps(config_to_json(config))) == config


# Recorded from Triton 2.51 (`GET /v2/models/simple/config`) serving this config.pbtxt with the python
# backend on a machine without GPUs.
TRITON_CONFIG_PBTXT = """
backend: "python"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 3, -1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 3, -1 ] } ]
dynamic_batching {
  max_queue_delay_microseconds: 100 priority_levels: 2 default_priority_level: 2
  priority_queue_policy { key: 1 value { default_timeout_microseconds: 9 } }
}
version_policy { specific { versions: [ 1 ] } }
"""
TRITON_SERVED = {
    "name": "simple",
    "platform": "",
    "backend": "python",
    "runtime": "",
    "version_policy": {"specific": {"versions": [1]}},
    "max_batch_size": 8,
    "input": [
        {
            "name": "x",
            "data_type": "TYPE_FP32",
            "format": "FORMAT_NONE",
            "dims": [3, -1],
            "is_shape_tensor": False,
            "allow_ragged_batch": False,
            "optional": False,
            "is_non_linear_format_io": False,
        }
    ],
    "output": [
        {
            "name": "y",
            "data_type": "TYPE_FP32",
            "dims": [3, -1],
            "label_filename": "",
            "is_shape_tensor": False,
            "is_non_linear_format_io": False,
        }
    ],
    "batch_input": [],
    "batch_output": [],
    "optimization": {
        "priority": "PRIORITY_DEFAULT",
        "input_pinned_memory": {"enable": True},
        "output_pinned_memory": {"enable": True},
        "gather_kernel_buffer_threshold": 0,
        "eager_batching": False,
    },
    "dynamic_batching": {
        "preferred_batch_size": [8],
        "max_queue_delay_microseconds": 100,
        "preserve_ordering": False,
        "priority_levels": 2,
        "default_priority_level": 2,
        "priority_queue_policy": {
            "1": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": 9,
                "allow_timeout_override": False,
                "max_queue_size": 0,
            }
        },
    },
    "instance_group": [
        {
            "name": "simple",
            "kind": "KIND_CPU",
            "count": 1,
            "gpus": [],
            "secondary_devices": [],
            "profile": [],
            "passive": False,
            "host_policy": "",
        }
    ],
    "default_model_filename": "model.py",
    "cc_model_filenames": {},
    "metric_tags": {},
    "parameters": {},
    "model_warmup": [],
}


def test_matches_what_triton_serves(model_folder: ModelFolder) -> None:
    model_dir = model_folder("simple", TRITON_CONFIG_PBTXT, files=("model.py",))
    ours = config_to_json(load_model_config(model_dir, available_gpus=(), backends=load_backend).config)
    assert ours == TRITON_SERVED
    assert list(ours) == list(TRITON_SERVED)
