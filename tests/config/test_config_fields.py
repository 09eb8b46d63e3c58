"""docs/config-fields.md names every ModelConfig field; refused fields fail the load with a reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor
from tritonclient.grpc.model_config_pb2 import ModelConfig

from packserve.config.field_policy import check_field_policy
from packserve.config.parse import parse_config_text
from packserve.errors import ConfigError

TABLE = Path(__file__).resolve().parents[2] / "docs" / "config-fields.md"


def leaf_fields(descriptor: Descriptor, depth: int = 0) -> set[str]:
    """Names of every field, nested messages' fields included (maps and recursion stop there)."""
    names: set[str] = set()
    for field in descriptor.fields:
        names.add(field.name)
        message = field.message_type
        if message is not None and not message.GetOptions().map_entry and depth < 4:
            names |= leaf_fields(message, depth + 1)
    return names


def test_the_table_names_every_field() -> None:
    mentioned = set(re.findall(r"[a-z_0-9]+", TABLE.read_text()))
    missing = sorted(leaf_fields(ModelConfig.DESCRIPTOR) - mentioned)
    assert not missing, f"docs/config-fields.md does not mention: {missing}"


BASE = """
name: "m"
backend: "onnxruntime"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { name: "g" count: 1 kind: KIND_CPU } ]
"""


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ('runtime: "libtriton_onnxruntime.so"', "runtime"),
        (
            'instance_group [ { name: "r" count: 1 kind: KIND_CPU rate_limiter { resources [ { name: "R" count: 1 } ] } } ]',
            "rate_limiter",
        ),
        (
            'optimization { execution_accelerators { cpu_execution_accelerator [ { name: "openvino" } ] } }',
            "OpenVINO",
        ),
        (
            'optimization { execution_accelerators { gpu_execution_accelerator [ { name: "other" } ] } }',
            "only 'tensorrt'",
        ),
        ('model_operations { op_library_filename: [ "libop.so" ] }', "model_operations"),
        ('model_repository_agents { agents [ { name: "checksum" } ] }', "model_repository_agents"),
        ('cc_model_filenames { key: "7.5" value: "a.onnx" }', "cc_model_filenames"),
        ('instance_group [ { name: "p" count: 1 kind: KIND_CPU passive: true } ]', "passive"),
    ],
)
def test_refused_fields_fail_with_their_reason(extra: str, reason: str) -> None:
    config = parse_config_text(BASE + extra, "test")
    with pytest.raises(ConfigError, match=reason):
        check_field_policy(config)


def test_performance_only_fields_load_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config_text(
        BASE + 'optimization { priority: PRIORITY_MAX } metric_tags { key: "a" value: "b" }', "t"
    )
    check_field_policy(config)
    assert "optimization.priority" in caplog.text and "metric_tags" in caplog.text


def test_a_plain_config_passes_quietly(caplog: pytest.LogCaptureFixture) -> None:
    check_field_policy(parse_config_text(BASE, "test"))
    assert caplog.text == ""
