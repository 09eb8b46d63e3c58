from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc.model_config_pb2 import ModelConfig, ModelInstanceGroup

from packserve.backends.registry import load_backend
from packserve.config.normalize import (
    fill_dynamic_batching_defaults,
    fill_instance_groups,
    guess_backend_from_files,
    normalize_config,
    resolve_platform_and_backend,
)
from packserve.config.parse import parse_config_text
from packserve.errors import ConfigError
from tests.fakes.config import FakeOnnxModel, ModelFolder
from tests.fakes.registry import BackendRegistry

KIND_CPU = ModelInstanceGroup.KIND_CPU
KIND_GPU = ModelInstanceGroup.KIND_GPU


def _normalize(model_dir: Path, text: str = "", gpus: tuple[int, ...] = ()) -> ModelConfig:
    return normalize_config(
        parse_config_text(text), model_dir, model_dir / "1", available_gpus=gpus, backends=load_backend
    )


def test_empty_config_is_completed_like_triton(model_folder: ModelFolder) -> None:
    model_dir = model_folder("detector")
    config = _normalize(model_dir)
    assert config.name == "detector"
    assert (config.platform, config.backend) == ("onnxruntime_onnx", "onnxruntime")
    assert config.default_model_filename == "model.onnx"
    assert config.version_policy.WhichOneof("policy_choice") == "latest"
    assert config.version_policy.latest.num_versions == 1
    assert [(g.name, g.kind, g.count, list(g.gpus)) for g in config.instance_group] == [
        ("detector", KIND_CPU, 1, [])
    ]
    assert config.optimization.input_pinned_memory.enable
    assert config.optimization.output_pinned_memory.enable
    # the backend's auto-complete ran against the version folder
    assert FakeOnnxModel.seen_version_dirs == [model_dir / "1"]
    assert [t.name for t in config.input] == ["INPUT0"]


def test_normalize_leaves_the_given_config_untouched(model_folder: ModelFolder) -> None:
    model_dir = model_folder("m")
    parsed = parse_config_text("max_batch_size: 4")
    normalize_config(parsed, model_dir, model_dir / "1", available_gpus=(), backends=load_backend)
    assert parsed == parse_config_text("max_batch_size: 4")


def test_config_name_must_match_folder(model_folder: ModelFolder) -> None:
    with pytest.raises(ConfigError, match="'other' does not match its folder name 'm'"):
        _normalize(model_folder("m"), 'name: "other"')


@pytest.mark.parametrize(
    ("text", "platform", "backend"),
    [
        ('platform: "onnxruntime_onnx"', "onnxruntime_onnx", "onnxruntime"),
        ('backend: "onnxruntime"', "onnxruntime_onnx", "onnxruntime"),
        ('platform: "pytorch_libtorch"', "pytorch_libtorch", "pytorch"),
        ('backend: "pytorch"', "pytorch_libtorch", "pytorch"),
        ('backend: "python"', "", "python"),
        ('platform: "onnxruntime_onnx" backend: "onnxruntime"', "onnxruntime_onnx", "onnxruntime"),
    ],
)
def test_platform_and_backend_fill_each_other(text: str, platform: str, backend: str) -> None:
    config = parse_config_text(text)
    resolve_platform_and_backend(config, None)
    assert (config.platform, config.backend) == (platform, backend)


def test_ensemble_stays_platform_only(model_folder: ModelFolder) -> None:
    text = """platform: "ensemble" max_batch_size: 4
      ensemble_scheduling { step [ { model_name: "a" input_map { key: "x" value: "x" }
                                      output_map { key: "y" value: "y" } } ] }"""
    config = _normalize(model_folder("ens", files=()), text)
    assert (config.platform, config.backend) == ("ensemble", "")
    assert not config.instance_group
    assert not config.HasField("optimization")
    assert config.default_model_filename == ""
    assert config.ensemble_scheduling.step[0].model_version == -1  # unset means latest


def test_ensemble_with_backend_is_rejected() -> None:
    config = parse_config_text('name: "e" platform: "ensemble" backend: "python"')
    with pytest.raises(ConfigError, match="ensemble model 'e' must have no backend, got backend 'python'"):
        resolve_platform_and_backend(config, None)


def test_platform_backend_mismatch_is_rejected() -> None:
    config = parse_config_text('name: "m" platform: "onnxruntime_onnx" backend: "pytorch"')
    with pytest.raises(ConfigError, match=r"platform 'onnxruntime_onnx' .* but backend 'pytorch'"):
        resolve_platform_and_backend(config, None)


def test_unknown_platform_is_rejected() -> None:
    config = parse_config_text('name: "m" platform: "tensorrt_plan"')
    with pytest.raises(ConfigError, match="unknown platform 'tensorrt_plan'"):
        resolve_platform_and_backend(config, None)


def test_ensemble_scheduling_without_ensemble_platform_is_rejected() -> None:
    config = parse_config_text('name: "m" ensemble_scheduling { step [ { model_name: "a" } ] }')
    with pytest.raises(ConfigError, match="platform is not 'ensemble'"):
        resolve_platform_and_backend(config, None)


@pytest.mark.parametrize(
    ("files", "backend"),
    [
        (("model.onnx",), "onnxruntime"),
        (("model.py",), "python"),
        (("model.pt",), "pytorch"),
        (("x.bin",), None),
    ],
)
def test_backend_guessed_from_version_files(
    model_folder: ModelFolder, files: tuple[str, ...], backend: str | None
) -> None:
    model_dir = model_folder("m", files=files)
    assert guess_backend_from_files(model_dir / "1") == backend


def test_backend_guessed_from_default_model_filename(tmp_path: Path) -> None:
    assert guess_backend_from_files(tmp_path, "weights.pt") == "pytorch"


def test_two_model_files_make_the_backend_ambiguous(model_folder: ModelFolder) -> None:
    model_dir = model_folder("m", files=("model.onnx", "model.py"))
    with pytest.raises(ConfigError, match=r"model.onnx and model.py; set 'backend'"):
        guess_backend_from_files(model_dir / "1")


def test_no_backend_and_no_model_file_is_rejected(model_folder: ModelFolder) -> None:
    with pytest.raises(ConfigError, match="model 'm' must specify 'platform' or 'backend'"):
        _normalize(model_folder("m", files=("weights.bin",)))


def test_unknown_backend_is_rejected(model_folder: ModelFolder) -> None:
    with pytest.raises(ConfigError, match="unknown backend 'tensorflow'"):
        _normalize(model_folder("m"), 'backend: "tensorflow"')


def test_failing_auto_complete_becomes_config_error(model_folder: ModelFolder) -> None:
    with pytest.raises(
        ConfigError, match=r"auto-complete of model 'm' by backend 'failing' failed: .*corrupt"
    ):
        _normalize(model_folder("m"), 'backend: "failing"')


def test_configured_default_model_filename_is_kept(model_folder: ModelFolder) -> None:
    config = _normalize(model_folder("m"), 'backend: "onnxruntime" default_model_filename: "net.onnx"')
    assert config.default_model_filename == "net.onnx"


def _groups(text: str, gpus: tuple[int, ...]) -> list[tuple[str, int, int, list[int]]]:
    config = parse_config_text('name: "m" ' + text)
    fill_instance_groups(config, gpus)
    return [(g.name, g.kind, g.count, list(g.gpus)) for g in config.instance_group]


def test_instance_groups_filled_like_triton() -> None:
    text = 'instance_group [ { count: 2 kind: KIND_CPU }, { name: "fast" }, { kind: KIND_GPU gpus: [1] } ]'
    assert _groups(text, gpus=(0, 1)) == [
        ("m_0", KIND_CPU, 2, []),
        ("fast", KIND_GPU, 1, [0, 1]),
        ("m_2", KIND_GPU, 1, [1]),
    ]


def test_kind_auto_falls_back_to_cpu_without_gpus() -> None:
    assert _groups("", gpus=()) == [("m", KIND_CPU, 1, [])]
    assert _groups("", gpus=(0,)) == [("m", KIND_GPU, 1, [0])]
    # AUTO listing a GPU that is not there means CPU, as in Triton
    assert _groups("instance_group [ { gpus: [3] } ]", gpus=(0,)) == [("m_0", KIND_CPU, 1, [3])]


def test_negative_instance_count_is_left_for_validation() -> None:
    assert _groups("instance_group [ { count: -1 kind: KIND_CPU } ]", gpus=()) == [("m_0", KIND_CPU, -1, [])]


def test_dynamic_batching_defaults() -> None:
    config = parse_config_text("max_batch_size: 16 dynamic_batching { priority_levels: 3 }")
    fill_dynamic_batching_defaults(config)
    assert list(config.dynamic_batching.preferred_batch_size) == [16]
    assert config.dynamic_batching.default_priority_level == 3

    explicit = parse_config_text(
        "max_batch_size: 16 dynamic_batching { preferred_batch_size: [4, 8] priority_levels: 3 "
        "default_priority_level: 1 }"
    )
    fill_dynamic_batching_defaults(explicit)
    assert list(explicit.dynamic_batching.preferred_batch_size) == [4, 8]
    assert explicit.dynamic_batching.default_priority_level == 1


def test_no_dynamic_batching_stays_absent() -> None:
    config = parse_config_text("max_batch_size: 16")
    fill_dynamic_batching_defaults(config)
    assert not config.HasField("dynamic_batching")


def test_backend_import_failure_becomes_config_error(
    model_folder: ModelFolder, backend_registry: BackendRegistry
) -> None:
    backend_registry.add_target("broken", "packserve.config.no_such_module:Model")
    with pytest.raises(ConfigError, match=r"model 'm': backend 'broken' is not available"):
        _normalize(model_folder("m"), 'backend: "broken"')


def test_region_map_is_composite_like_an_ensemble() -> None:
    config = parse_config_text('name: "r" platform: "region_map" backend: "onnxruntime"')
    with pytest.raises(ConfigError, match="region_map model 'r' must have no backend"):
        resolve_platform_and_backend(config, None)
    plain = parse_config_text('name: "r" platform: "region_map"')
    resolve_platform_and_backend(plain, None)
    assert (plain.platform, plain.backend) == ("region_map", "")
