from __future__ import annotations

from pathlib import Path

import pytest

from packserve.backends.registry import load_backend
from packserve.config.normalize import normalize_config
from packserve.config.parse import parse_config_text
from packserve.config.validate import validate_config
from packserve.errors import ConfigError

BASE = """
backend: "onnxruntime"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 3, -1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 10 ] } ]
"""

ENSEMBLE_STEPS = """ensemble_scheduling { step [ { model_name: "a" model_version: -1
    input_map { key: "in" value: "x" } output_map { key: "out" value: "y" } } ] }"""


def _check(tmp_path: Path, text: str, gpus: tuple[int, ...] = ()) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir(exist_ok=True)
    config = normalize_config(
        parse_config_text(text), model_dir, None, available_gpus=gpus, backends=load_backend
    )
    validate_config(config, model_dir, available_gpus=gpus)


def test_valid_config_passes(tmp_path: Path) -> None:
    _check(tmp_path, BASE + "dynamic_batching { preferred_batch_size: [ 4, 8 ] }")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("input [ { data_type: TYPE_FP32 dims: [ 1 ] } ]", r"every input must specify 'name'"),
        ('output [ { name: "z" dims: [ 1 ] } ]', r"output 'z' must specify 'data_type'"),
        ('input [ { name: "b" data_type: TYPE_BF16 dims: [ 1 ] } ]', r"input 'b' has data type TYPE_BF16"),
        ('input [ { name: "e" data_type: TYPE_FP32 } ]', r"input 'e' must specify 'dims'"),
        (
            'input [ { name: "z" data_type: TYPE_FP32 dims: [ 0 ] } ]',
            r"input 'z' dims must be integers >= 1 or -1",
        ),
        ('input [ { name: "n" data_type: TYPE_FP32 dims: [ 2, -3 ] } ]', r"got \[2, -3\]"),
        (
            'input [ { name: "x" data_type: TYPE_INT32 dims: [ 1 ] } ]',
            r"model 'm' has input 'x' more than once",
        ),
        ('output [ { name: "y" data_type: TYPE_INT32 dims: [ 1 ] } ]', r"has output 'y' more than once"),
    ],
)
def test_tensor_errors(tmp_path: Path, extra: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        _check(tmp_path, BASE + extra)


@pytest.mark.parametrize(
    ("dims", "reshape"),
    [
        ("[ 2, 3 ]", "[ 6 ]"),
        ("[ 1 ]", "[ ]"),
        ("[ 2, 4, -1, 6 ]", "[ 8, -1, 1, 6 ]"),
        ("[ -1 ]", "[ -1, 1 ]"),
    ],
)
def test_consistent_reshapes_pass(tmp_path: Path, dims: str, reshape: str) -> None:
    _check(
        tmp_path,
        BASE + f'input [ {{ name: "r" data_type: TYPE_FP32 dims: {dims} reshape {{ shape: {reshape} }} }} ]',
    )


@pytest.mark.parametrize(
    ("dims", "reshape", "fragment"),
    [
        ("[ 2, 3 ]", "[ 5 ]", r"dims \[2, 3\] and reshape \[5\] hold different element counts"),
        ("[ 2, -1 ]", "[ 2 ]", r"different numbers of variable \(-1\) dimensions"),
        ("[ 2, -1, 3 ]", "[ 3, -1, 2 ]", "hold different element counts"),
        ("[ 4 ]", "[ ]", r"an empty reshape needs dims with one element"),
        ("[ 4 ]", "[ 0, 4 ]", "reshape must be integers >= 1 or -1"),
    ],
)
def test_inconsistent_reshapes_fail(tmp_path: Path, dims: str, reshape: str, fragment: str) -> None:
    text = (
        BASE + f'input [ {{ name: "r" data_type: TYPE_FP32 dims: {dims} reshape {{ shape: {reshape} }} }} ]'
    )
    with pytest.raises(ConfigError, match=fragment):
        _check(tmp_path, text)


def test_empty_reshape_needs_a_batching_model(tmp_path: Path) -> None:
    text = BASE.replace("max_batch_size: 8", "max_batch_size: 0")
    text += 'input [ { name: "s" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } } ]'
    with pytest.raises(ConfigError, match="cannot have an empty reshape in a model that does not batch"):
        _check(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (BASE.replace("max_batch_size: 8", "max_batch_size: -2"), r"'max_batch_size' must be >= 0, got -2"),
        (
            BASE.replace("max_batch_size: 8", "max_batch_size: 0") + "dynamic_batching { }",
            "sets dynamic_batching but max_batch_size is 0",
        ),
        (
            BASE + "dynamic_batching { preferred_batch_size: [ 16 ] }",
            r"preferred_batch_size 16 must be in \[1, max",
        ),
        (BASE + "dynamic_batching { preferred_batch_size: [ 0 ] }", "preferred_batch_size 0 must be in"),
        (
            BASE + "dynamic_batching { priority_levels: 2 default_priority_level: 3 }",
            r"default_priority_level 3 must be in \[1, priority_levels=2\]",
        ),
        (
            BASE + "dynamic_batching { default_priority_level: 1 }",
            "sets a default_priority_level or priority_queue_policy but priority_levels is 0",
        ),
        (
            BASE + "dynamic_batching { priority_levels: 2 priority_queue_policy { key: 5 value: { } } }",
            r"priority_queue_policy level 5 must be in \[1, priority_levels=2\]",
        ),
        (
            BASE + "dynamic_batching { preserve_ordering: true priority_levels: 2 }",
            "preserve_ordering allows one priority level, got 2",
        ),
        (
            BASE
            + "dynamic_batching { preserve_ordering: true default_queue_policy "
            + "{ timeout_action: DELAY default_timeout_microseconds: 100 } }",
            "cannot use timeout_action DELAY with preserve_ordering",
        ),
    ],
)
def test_batching_errors(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        _check(tmp_path, text)


def test_valid_priority_configuration_passes(tmp_path: Path) -> None:
    _check(
        tmp_path,
        BASE
        + "dynamic_batching { priority_levels: 3 "
        + "priority_queue_policy { key: 1 value: { max_queue_size: 4 } } }",
    )


@pytest.mark.parametrize(
    ("groups", "gpus", "fragment"),
    [
        ("{ count: -1 kind: KIND_CPU }", (), r"instance group 'm_0': count must be >= 1, got -1"),
        (
            '{ name: "g" kind: KIND_CPU }, { name: "g" kind: KIND_CPU }',
            (),
            "instance group 'g' more than once",
        ),
        ("{ kind: KIND_GPU }", (), "has kind KIND_GPU but no GPUs are available"),
        ("{ kind: KIND_GPU gpus: [ 0, 2 ] }", (0, 1), r"asks for GPUs \[2\], available: \[0, 1\]"),
        ("{ kind: KIND_CPU gpus: [ 0 ] }", (0,), r"has kind KIND_CPU but lists GPUs \[0\]"),
        ("{ kind: KIND_MODEL gpus: [ 0 ] }", (0,), "has kind KIND_MODEL but lists GPUs"),
    ],
)
def test_instance_group_errors(tmp_path: Path, groups: str, gpus: tuple[int, ...], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        _check(tmp_path, BASE + f"instance_group [ {groups} ]", gpus=gpus)


def test_gpu_group_passes_with_gpus(tmp_path: Path) -> None:
    _check(tmp_path, BASE + "instance_group [ { kind: KIND_GPU count: 2 } ]", gpus=(0,))


@pytest.mark.parametrize(
    ("policy", "fragment"),
    [
        ("latest { num_versions: 0 }", "latest num_versions must be >= 1, got 0"),
        ("specific { }", "version_policy specific lists no versions"),
        ("specific { versions: [ 0 ] }", r"specific versions must be >= 1, got \[0\]"),
    ],
)
def test_version_policy_errors(tmp_path: Path, policy: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        _check(tmp_path, BASE + f"version_policy {{ {policy} }}")


def test_missing_label_file_is_rejected(tmp_path: Path) -> None:
    text = BASE.replace("dims: [ 10 ]", 'dims: [ 10 ] label_filename: "labels.txt"')
    with pytest.raises(ConfigError, match=r"output 'y': label file 'labels.txt' not found"):
        _check(tmp_path, text)
    (tmp_path / "m" / "labels.txt").write_text("cat\ndog\n")
    _check(tmp_path, text)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ("sequence_batching { }", "does not support: sequence_batching"),
        ("model_transaction_policy { decoupled: true }", "decoupled transaction policy"),
        ('batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "n" source_input: "x" } ]', "batch_input"),
        (
            'input [ { name: "s" data_type: TYPE_INT64 dims: [ 2 ] is_shape_tensor: true } ]',
            "shape tensor 's'",
        ),
        (
            'input [ { name: "r" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true } ]',
            "ragged batching",
        ),
    ],
)
def test_unsupported_features_are_rejected(tmp_path: Path, extra: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        _check(tmp_path, BASE + extra)


def test_valid_ensemble_passes(tmp_path: Path) -> None:
    _check(tmp_path, 'platform: "ensemble" max_batch_size: 4 ' + ENSEMBLE_STEPS)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('platform: "ensemble"', "must specify ensemble_scheduling with at least one step"),
        (
            'platform: "ensemble" ensemble_scheduling { }',
            "must specify ensemble_scheduling with at least one step",
        ),
        (
            'platform: "ensemble" instance_group [ { kind: KIND_CPU } ] ' + ENSEMBLE_STEPS,
            "ensemble model 'm' must not specify instance_group",
        ),
        (
            'platform: "ensemble" optimization { } ' + ENSEMBLE_STEPS,
            "ensemble model 'm' must not specify optimization",
        ),
        (
            'platform: "ensemble" ensemble_scheduling { step [ { input_map { key: "a" value: "b" } } ] }',
            "step 0 must specify 'model_name'",
        ),
        (
            'platform: "ensemble" '
            'ensemble_scheduling { step [ { model_name: "a" output_map { key: "a" value: "b" } } ] }',
            r"step 0 \(model 'a'\) must specify 'input_map'",
        ),
        (
            'platform: "ensemble" '
            'ensemble_scheduling { step [ { model_name: "a" input_map { key: "a" value: "b" } } ] }',
            "must specify 'output_map'",
        ),
        (
            'platform: "ensemble" ' + ENSEMBLE_STEPS.replace("model_version: -1", "model_version: -5"),
            "model_version must be -1 .latest. or >= 1, got -5",
        ),
    ],
)
def test_ensemble_scheduling_errors(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        _check(tmp_path, text)
