from __future__ import annotations

import json
from pathlib import Path

import pytest
from tritonclient.grpc.model_config_pb2 import DataType as ConfigDataType

from packserve.config.parse import (
    find_config_file,
    parse_config_json,
    parse_config_text,
    parse_model_config,
)
from packserve.errors import ConfigError

PBTXT = """
name: "resnet"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x", data_type: TYPE_FP32, dims: [ 3, -1, -1 ] } ]
output [ { name: "y", data_type: TYPE_FP32, dims: [ 1000 ] } ]
dynamic_batching { max_queue_delay_microseconds: 500 }
"""

YAML = """
name: resnet
platform: onnxruntime_onnx
max_batch_size: 8
input:
  - {name: x, data_type: TYPE_FP32, dims: [3, -1, -1]}
output:
  - {name: y, data_type: TYPE_FP32, dims: [1000]}
dynamic_batching: {max_queue_delay_microseconds: 500}
"""

AS_DICT = {
    "name": "resnet",
    "platform": "onnxruntime_onnx",
    "max_batch_size": 8,
    "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3, -1, -1]}],
    "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [1000]}],
    "dynamic_batching": {"max_queue_delay_microseconds": 500},
}


@pytest.mark.parametrize(
    ("file_name", "text"),
    [
        ("config.pbtxt", PBTXT),
        ("config.yaml", YAML),
        ("config.yml", YAML),
        ("config.json", json.dumps(AS_DICT)),
    ],
)
def test_every_format_parses_to_the_same_config(tmp_path: Path, file_name: str, text: str) -> None:
    (tmp_path / file_name).write_text(text)
    config = parse_model_config(tmp_path)
    assert config == parse_config_text(PBTXT)
    assert config.name == "resnet"
    assert config.max_batch_size == 8
    assert list(config.input[0].dims) == [3, -1, -1]
    assert config.input[0].data_type == ConfigDataType.TYPE_FP32
    assert config.dynamic_batching.max_queue_delay_microseconds == 500


def test_missing_config_file_is_an_empty_config(tmp_path: Path) -> None:
    assert find_config_file(tmp_path) is None
    config = parse_model_config(tmp_path)
    assert config.ByteSize() == 0


def test_two_config_files_are_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "config.pbtxt").write_text(PBTXT)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"several config files \(config.pbtxt, config.json\)"):
        parse_model_config(tmp_path)


def test_unparsable_pbtxt_names_file_and_parser_message(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "m"\nmax_batch_size: eight\n')
    with pytest.raises(ConfigError) as caught:
        parse_model_config(tmp_path)
    message = str(caught.value)
    assert str(path) in message
    assert "2:" in message  # the protobuf parser's line number
    assert "max_batch_size" in message


def test_unknown_field_in_pbtxt_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "config.pbtxt").write_text('name: "m"\nmax_batch: 4\n')
    with pytest.raises(ConfigError, match="max_batch"):
        parse_model_config(tmp_path)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: [unclosed", "config.yaml"),
        ("- a\n- b\n", "expected a mapping of config fields, got list"),
        ("max_batch_size: lots\n", "max_batch_size"),
        ("input: [{name: x, data_type: TYPE_NOPE}]\n", "TYPE_NOPE"),
        ("bogus_field: 1\n", "bogus_field"),
    ],
)
def test_bad_yaml_is_a_config_error(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        parse_model_config(tmp_path)


def test_empty_yaml_is_an_empty_config(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("")
    assert parse_model_config(tmp_path).ByteSize() == 0


def test_override_json_parses_like_a_config_file() -> None:
    config = parse_config_json(json.dumps(AS_DICT))
    assert config == parse_config_text(PBTXT)


def test_override_json_accepts_int64_as_strings_and_numbers() -> None:
    as_numbers = parse_config_json('{"input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3, 4]}]}')
    as_strings = parse_config_json('{"input": [{"name": "x", "data_type": "TYPE_FP32", "dims": ["3", "4"]}]}')
    assert as_numbers == as_strings


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "config override"),
        ('"a string"', "got str"),
        ('{"max_batch_size": "x"}', "max_batch_size"),
    ],
)
def test_bad_override_json_is_a_config_error(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_config_json(text)


def test_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.pbtxt").write_bytes(b'name: "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="cannot read model config"):
        parse_model_config(tmp_path)
