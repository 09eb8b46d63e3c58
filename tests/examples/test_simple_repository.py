from __future__ import annotations

from pathlib import Path

import numpy as np

from packserve.backends.base import BackendInstance, InstanceContext
from packserve.backends.onnxruntime import OnnxRuntimeModel
from packserve.backends.python import PythonModel
from packserve.config.parse import parse_model_config
from packserve.errors import ModelExecutionError
from packserve.examples.simple_repository import (
    CLASS_LABELS,
    build_simple_repository,
    classifier_weights,
    main,
)
from packserve.messages import InferRequest
from tests.fakes.backends import RecordingTimer, model_context, request

CPU = InstanceContext(name="m_0_0", kind="KIND_CPU", device_id=0)


def run_one(instance: BackendInstance, model: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    (result,) = instance.execute([InferRequest(model_name=model, inputs=dict(inputs))], RecordingTimer())
    assert isinstance(result, dict)
    return result


def test_build_is_idempotent_and_leaves_files_untouched(tmp_path: Path) -> None:
    root = build_simple_repository(tmp_path / "repo")
    stamps = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    assert build_simple_repository(root) == root
    assert stamps == {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    assert {p.name for p in root.iterdir()} == {
        "simple",
        "simple_v3",
        "classifier",
        "python_add",
        "simple_ensemble",
    }
    assert not (root / "simple_v3" / "config.pbtxt").exists()
    assert [p.name for p in (root / "simple_v3").iterdir()] == ["3"]


def test_simple_and_simple_v3_compute_sum_and_difference(tmp_path: Path) -> None:
    root = build_simple_repository(tmp_path)
    context = model_context(root / "simple")
    assert context.spec.max_batch_size == 8
    assert (
        context.spec.dynamic_batching is not None and context.spec.dynamic_batching.max_queue_delay_us == 500
    )
    assert [(g.kind, g.count) for g in context.spec.instance_groups] == [("KIND_CPU", 2)]
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 3, dtype=np.int32)
    out = run_one(OnnxRuntimeModel(context).create_instance(CPU), "simple", INPUT0=a, INPUT1=b)
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)

    v3 = model_context(root / "simple_v3", version=3)
    assert v3.spec.max_batch_size == 4 and v3.spec.dynamic_batching is not None
    out = run_one(OnnxRuntimeModel(v3).create_instance(CPU), "simple_v3", INPUT0=a[:1], INPUT1=b[:1])
    np.testing.assert_array_equal(out["OUTPUT1"], a[:1] - b[:1])


def test_classifier_is_a_labelled_softmax(tmp_path: Path) -> None:
    root = build_simple_repository(tmp_path)
    context = model_context(root / "classifier")
    assert context.spec.outputs[0].labels == CLASS_LABELS
    image = np.random.default_rng(1).random((3, 3, 8, 8), dtype=np.float32)
    out = run_one(OnnxRuntimeModel(context).create_instance(CPU), "classifier", INPUT=image)["OUTPUT"]
    weights, bias = classifier_weights()
    logits = image.reshape(3, -1) @ weights + bias
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_python_add_doubles_and_rejects_negative_requests(tmp_path: Path) -> None:
    root = build_simple_repository(tmp_path)
    instance = PythonModel(model_context(root / "python_add")).create_instance(CPU)
    x = np.array([[1, 2, 3, 4]], dtype=np.float32)
    good, bad = instance.execute(
        [request("python_add", INPUT0=x), request("python_add", INPUT0=-x)], RecordingTimer()
    )
    assert isinstance(good, dict)
    np.testing.assert_array_equal(good["OUTPUT0"], x * 2)
    assert isinstance(bad, ModelExecutionError)
    instance.close()


def test_ensemble_config_chains_simple_twice(tmp_path: Path) -> None:
    root = build_simple_repository(tmp_path)
    config = parse_model_config(root / "simple_ensemble")
    assert config.platform == "ensemble"
    steps = config.ensemble_scheduling.step
    assert [step.model_name for step in steps] == ["simple", "simple"]
    assert dict(steps[1].input_map) == {"INPUT0": "sum", "INPUT1": "difference"}
    assert (root / "simple_ensemble" / "1").is_dir()


def test_module_entry_point(tmp_path: Path, capsys: object) -> None:
    assert main([str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "simple" / "1" / "model.onnx").is_file()
    assert main([]) == 2
