from __future__ import annotations

import json
from pathlib import Path

import pytest

from packserve.backends.registry import load_backend
from packserve.config.loader import LoadedConfig, load_model_config
from packserve.errors import ConfigError
from tests.fakes.config import FakeOnnxModel, ModelFolder

CONFIG = """
name: "m"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
version_policy { latest { num_versions: 2 } }
"""


def test_loads_folder_into_config_spec_and_versions(model_folder: ModelFolder) -> None:
    model_dir = model_folder("m", CONFIG, versions=(1, 2, 5))
    loaded = load_model_config(model_dir, available_gpus=(), backends=load_backend)
    assert isinstance(loaded, LoadedConfig)
    assert loaded.versions == (2, 5)
    assert loaded.config.backend == "onnxruntime"
    assert loaded.spec.name == "m"
    assert [t.name for t in loaded.spec.inputs] == ["x"]
    # auto-complete looked at the newest selected version
    assert FakeOnnxModel.seen_version_dirs == [model_dir / "5"]


@pytest.mark.parametrize("config_name", ["config.yaml", "config.json"])
def test_yaml_and_json_folders_load_the_same(model_folder: ModelFolder, config_name: str) -> None:
    document = {
        "platform": "onnxruntime_onnx",
        "max_batch_size": 4,
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [2]}],
        "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [2]}],
        "version_policy": {"latest": {"num_versions": 2}},
    }
    model_dir = model_folder("m", json.dumps(document), config_name=config_name, versions=(1, 2, 5))
    reference = model_folder("ref", CONFIG.replace('"m"', '"ref"'), versions=(1, 2, 5))
    loaded = load_model_config(model_dir, available_gpus=(), backends=load_backend)
    expected = load_model_config(reference, available_gpus=(), backends=load_backend)
    assert loaded.spec.inputs == expected.spec.inputs
    assert loaded.spec.max_batch_size == expected.spec.max_batch_size
    assert loaded.versions == expected.versions


def test_folder_without_config_is_auto_completed(model_folder: ModelFolder) -> None:
    loaded = load_model_config(model_folder("auto"), available_gpus=(), backends=load_backend)
    assert loaded.spec.backend == "onnxruntime"
    assert [t.name for t in loaded.spec.inputs] == ["INPUT0"]
    assert loaded.versions == (1,)


def test_override_json_replaces_the_config_file(model_folder: ModelFolder) -> None:
    model_dir = model_folder("m", CONFIG, versions=(1, 2, 5))
    override = json.dumps({"backend": "onnxruntime", "max_batch_size": 0, "version_policy": {"all": {}}})
    loaded = load_model_config(model_dir, override, available_gpus=(), backends=load_backend)
    assert loaded.spec.max_batch_size == 0
    assert loaded.versions == (1, 2, 5)
    assert [t.name for t in loaded.spec.inputs] == ["INPUT0"]  # the file's inputs are gone


def test_ensemble_dataflow_is_checked_at_load(model_folder: ModelFolder) -> None:
    text = """platform: "ensemble" max_batch_size: 4
      input [ { name: "raw" data_type: TYPE_UINT8 dims: [ -1 ] } ]
      output [ { name: "out" data_type: TYPE_FP32 dims: [ 3 ] } ]
      ensemble_scheduling { step [ { model_name: "cls" input_map { key: "x" value: "missing" }
                                     output_map { key: "y" value: "out" } } ] }"""
    model_dir = model_folder("pipe", text, files=())
    with pytest.raises(ConfigError, match="ensemble tensor 'missing', which is neither an ensemble input"):
        load_model_config(model_dir, available_gpus=(), backends=load_backend)


@pytest.mark.parametrize(
    ("text", "versions", "fragment"),
    [
        (CONFIG, (), "model 'm': no model versions found"),
        (
            CONFIG.replace("latest { num_versions: 2 }", "specific { versions: [ 3 ] }"),
            (1,),
            r"model 'm': version_policy specific asks for version\(s\) \[3\]",
        ),
        (
            CONFIG.replace("latest { num_versions: 2 }", "latest { }"),
            (1,),
            "num_versions must be >= 1, got 0",
        ),
        (CONFIG.replace('name: "m"', 'name: "n"'), (1,), "'n' does not match its folder name 'm'"),
        (CONFIG.replace("max_batch_size: 4", "max_batch_size: -1"), (1,), "'max_batch_size' must be >= 0"),
        ("max_batch_size: [", (1,), "cannot parse model config"),
    ],
)
def test_every_failure_is_a_config_error(
    model_folder: ModelFolder, text: str, versions: tuple[int, ...], fragment: str
) -> None:
    model_dir = model_folder("m", text, versions=versions)
    with pytest.raises(ConfigError, match=fragment):
        load_model_config(model_dir, available_gpus=(), backends=load_backend)


def test_bad_override_is_a_config_error(model_folder: ModelFolder) -> None:
    with pytest.raises(ConfigError, match="config override for model 'm'"):
        load_model_config(model_folder("m", CONFIG), "{", available_gpus=(), backends=load_backend)


def test_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_model_config(tmp_path / "nope", available_gpus=(), backends=load_backend)


def test_loaded_config_is_frozen(model_folder: ModelFolder) -> None:
    loaded = load_model_config(model_folder("m", CONFIG), available_gpus=(), backends=load_backend)
    with pytest.raises(AttributeError):
        loaded.versions = ()  # type: ignore[misc]
