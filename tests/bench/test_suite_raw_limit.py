"""The raw limit runs the real backend in-process; the image model builds and runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.suite.image_model import ImageModelOptions, build_classifier, write_image_model
from bench.suite.raw_limit import RawOptions, measure_raw_limit
from bench.suite.runner import models_to_load
from packserve.errors import InvalidArgumentError
from packserve.examples.simple_repository import build_simple_repository

FAST = RawOptions(window_seconds=0.02, windows=1, warmup_executions=1)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_simple_repository(tmp_path_factory.mktemp("repository"))


def test_simple_is_measured_at_every_batch_size(repository: Path) -> None:
    limit = measure_raw_limit(repository, "simple", FAST)
    assert limit.backend == "onnxruntime"
    assert limit.instances == 2  # as configured: instance_group count 2
    assert [point.batch_size for point in limit.points] == list(range(1, 9))
    assert all(point.rows_per_s > 0 and point.executions > 0 for point in limit.points)
    assert limit.best.rows_per_s == max(point.rows_per_s for point in limit.points)


def test_an_ensemble_has_no_raw_limit(repository: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="'simple_ensemble' has no raw limit: ensemble"):
        measure_raw_limit(repository, "simple_ensemble", FAST)


def test_a_shape_for_an_unknown_input_is_refused(repository: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"'simple' has no input.*NOPE"):
        measure_raw_limit(
            repository, "simple", RawOptions(window_seconds=0.01, windows=1, shapes={"NOPE": (3,)})
        )


def test_an_ensemble_loads_the_models_its_steps_call(repository: Path) -> None:
    assert models_to_load(repository, ["simple_ensemble", "classifier"]) == [
        "simple_ensemble",
        "classifier",
        "simple",
    ]


def test_image_classifier_is_a_valid_batched_cnn(tmp_path: Path) -> None:
    import onnxruntime as ort

    options = ImageModelOptions(width=0.25, max_batch_size=4, instances=1)
    model, parameters = build_classifier(options)
    assert parameters > 500_000
    ops = {node.op_type for node in model.graph.node}
    assert {"Conv", "Clip", "Add", "GlobalAveragePool", "Gemm", "Softmax"} <= ops
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)
    (probabilities,) = session.run(None, {"INPUT": images})
    assert probabilities.shape == (2, 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)

    model_dir = write_image_model(tmp_path, options)
    config = (model_dir / "config.pbtxt").read_text()
    assert "max_batch_size: 4" in config and "count: 1" in config
    written = (model_dir / "1" / "model.onnx").stat().st_mtime_ns
    write_image_model(tmp_path, options)  # same content: the file is left alone
    assert (model_dir / "1" / "model.onnx").stat().st_mtime_ns == written


def test_image_classifier_raw_limit_through_the_backend(tmp_path: Path) -> None:
    write_image_model(tmp_path, ImageModelOptions(width=0.25, max_batch_size=2, instances=1))
    limit = measure_raw_limit(tmp_path, "image_classifier", FAST)
    assert [point.batch_size for point in limit.points] == [1, 2]
    assert limit.best.rows_per_s > 0
