"""Acceptance: the official `tritonclient.http` client, unmodified, against a live `packserve serve`
process serving the example repository (explicit mode, every model loaded at startup). Bad
requests and bodies are in test_http_errors.py.

Tests in this module share one server and run in file order; a test that changes the server
(unload, load with an override) puts it back before it ends.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from packserve.examples.simple_repository import CLASS_LABELS, classifier_weights
from tests.e2e.e2e_server import LiveServer, LiveServerFactory, direct_http_session
from tests.e2e.e2e_simple import simple_inputs, simple_operands

EXAMPLE_MODELS = ("classifier", "python_add", "simple", "simple_ensemble", "simple_v3")

HTTP = direct_http_session()


@pytest.fixture(scope="module")
def server(live_server_factory: LiveServerFactory, example_repository: Path) -> LiveServer:
    return live_server_factory(
        example_repository,
        control_mode="explicit",
        load_models=["*"],
    )


def model_stats(client: httpclient.InferenceServerClient, model: str) -> dict[str, Any]:
    stats: dict[str, Any] = client.get_inference_statistics(model)["model_stats"][0]
    return stats


@contextlib.contextmanager
def config_override(
    client: httpclient.InferenceServerClient, model: str, config: dict[str, Any]
) -> Iterator[None]:
    """Reload `model` with a JSON config override (the load request's parameters.config); reload
    it from its own folder afterwards."""
    client.load_model(model, config=json.dumps(config))
    try:
        yield
    finally:
        client.load_model(model)


# ---- health, metadata, config -------------------------------------------------------------------


def test_health_and_server_metadata(client: httpclient.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "packserve"
    assert metadata["version"]
    # perf_analyzer asks for server-side statistics only when this extension is listed.
    assert {"statistics", "model_repository", "binary_tensor_data", "classification"} <= set(
        metadata["extensions"]
    )


def test_model_metadata(client: httpclient.InferenceServerClient) -> None:
    simple = client.get_model_metadata("simple")
    assert simple["name"] == "simple"
    assert simple["versions"] == ["1"]
    assert simple["platform"] == "onnxruntime_onnx"
    assert simple["inputs"] == [
        {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
        {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]},
    ]
    assert [o["name"] for o in simple["outputs"]] == ["OUTPUT0", "OUTPUT1"]
    # simple_v3 has no config.pbtxt: auto-completed from the graph; its only version folder is 3.
    v3 = client.get_model_metadata("simple_v3")
    assert v3["versions"] == ["3"]
    assert v3["inputs"] == simple["inputs"]
    assert client.get_model_metadata("simple_v3", model_version="3")["name"] == "simple_v3"


def test_model_config_is_triton_json(server: LiveServer, client: httpclient.InferenceServerClient) -> None:
    config = client.get_model_config("simple")
    assert config["name"] == "simple"
    assert config["max_batch_size"] == 8
    assert [i["name"] for i in config["input"]] == ["INPUT0", "INPUT1"]
    assert config["input"][0]["data_type"] == "TYPE_INT32"
    assert config["input"][0]["dims"] == [16]
    assert config["instance_group"][0]["count"] == 2
    # Triton prints int64/uint64 fields as JSON numbers, not the strings protobuf's JSON uses.
    raw = HTTP.get(f"{server.http_base}/v2/models/simple/config", timeout=10).json()
    assert raw["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert raw["input"][0]["dims"] == [16]
    v3 = client.get_model_config("simple_v3")
    assert v3["max_batch_size"] > 0 and [i["name"] for i in v3["input"]] == ["INPUT0", "INPUT1"]


def test_model_ready(client: httpclient.InferenceServerClient) -> None:
    for name in EXAMPLE_MODELS:
        assert client.is_model_ready(name), name
    assert client.is_model_ready("simple_v3", "3")
    assert not client.is_model_ready("simple_v3", "1")
    assert not client.is_model_ready("no_such_model")


# ---- inference ----------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("batch", [1, 5])
def test_simple_infer(client: httpclient.InferenceServerClient, binary: bool, batch: int) -> None:
    a, b = simple_operands(batch, offset=batch)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")]
    result = client.infer("simple", simple_inputs(a, b, binary), outputs=outputs, request_id=f"req-{batch}")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert response["id"] == f"req-{batch}"
    assert response["model_name"] == "simple"


def test_simple_v3_infer_by_version(client: httpclient.InferenceServerClient) -> None:
    a, b = simple_operands(2)
    result = client.infer("simple_v3", simple_inputs(a, b), model_version="3")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    assert result.get_response()["model_version"] == "3"
    with pytest.raises(InferenceServerException, match="simple_v3"):
        client.infer("simple_v3", simple_inputs(a, b), model_version="1")


def test_requested_output_subset(client: httpclient.InferenceServerClient) -> None:
    a, b = simple_operands(1)
    result = client.infer("simple", simple_inputs(a, b), outputs=[httpclient.InferRequestedOutput("OUTPUT1")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["OUTPUT1"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    assert result.as_numpy("OUTPUT0") is None


def test_classification_with_labels(client: httpclient.InferenceServerClient) -> None:
    rng = np.random.default_rng(3)
    images = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    image_input = httpclient.InferInput("INPUT", [2, 3, 8, 8], "FP32")
    image_input.set_data_from_numpy(images)
    result = client.infer(
        "classifier", [image_input], outputs=[httpclient.InferRequestedOutput("OUTPUT", class_count=3)]
    )
    classes = result.as_numpy("OUTPUT")
    assert classes.shape == (2, 3)
    weights, bias = classifier_weights()
    logits = images.reshape(2, -1) @ weights + bias
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    for row, expected in zip(classes, probabilities, strict=True):
        top = np.argsort(-expected)[:3]
        fields = [entry.decode().split(":") for entry in row]
        assert [int(index) for _, index, _ in fields] == top.tolist()
        assert [label for _, _, label in fields] == [CLASS_LABELS[i] for i in top]
        np.testing.assert_allclose([float(score) for score, _, _ in fields], expected[top], rtol=1e-4)


def test_python_backend_model(client: httpclient.InferenceServerClient) -> None:
    values = np.array([[0.5, 1.0, 2.0, 3.25], [4.0, 0.0, 8.5, 1.5]], dtype=np.float32)
    tensor = httpclient.InferInput("INPUT0", [2, 4], "FP32")
    tensor.set_data_from_numpy(values)
    result = client.infer("python_add", [tensor])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), values * 2)


def test_ensemble(client: httpclient.InferenceServerClient) -> None:
    a, b = simple_operands(3)
    result = client.infer("simple_ensemble", simple_inputs(a, b, binary=False))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * a)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), 2 * b)


# ---- statistics and repository ------------------------------------------------------------------


def test_statistics_count_a_batch(client: httpclient.InferenceServerClient) -> None:
    before = model_stats(client, "simple")
    a, b = simple_operands(5)
    client.infer("simple", simple_inputs(a, b))
    after = model_stats(client, "simple")
    assert after["inference_count"] - before["inference_count"] == 5
    assert after["execution_count"] - before["execution_count"] == 1
    success_before = before["inference_stats"]["success"]["count"]
    assert after["inference_stats"]["success"]["count"] == success_before + 1
    for phase in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert after["inference_stats"][phase]["ns"] > before["inference_stats"][phase]["ns"], phase
    batch_sizes = {entry["batch_size"]: entry for entry in after["batch_stats"]}
    assert 5 in batch_sizes
    assert batch_sizes[5]["compute_infer"]["count"] >= 1
    assert after["last_inference"] > 0


def test_repository_index(client: httpclient.InferenceServerClient) -> None:
    index = client.get_model_repository_index()
    assert sorted(entry["name"] for entry in index) == list(EXAMPLE_MODELS)
    assert all(entry["state"] == "READY" for entry in index), index
    versions = {entry["name"]: entry["version"] for entry in index}
    assert versions["simple_v3"] == "3" and versions["simple"] == "1"


def test_unload_then_load(client: httpclient.InferenceServerClient) -> None:
    a, b = simple_operands(1)
    client.unload_model("simple_v3")
    try:
        assert not client.is_model_ready("simple_v3")
        entry = next(e for e in client.get_model_repository_index() if e["name"] == "simple_v3")
        assert entry["state"] == "UNAVAILABLE"
        with pytest.raises(InferenceServerException, match="simple_v3"):
            client.infer("simple_v3", simple_inputs(a, b))
    finally:
        client.load_model("simple_v3")
    assert client.is_model_ready("simple_v3")
    np.testing.assert_array_equal(client.infer("simple_v3", simple_inputs(a, b)).as_numpy("OUTPUT0"), a + b)


def test_load_with_config_override(client: httpclient.InferenceServerClient) -> None:
    with config_override(client, "simple_v3", {"backend": "onnxruntime", "max_batch_size": 2}):
        assert client.get_model_config("simple_v3")["max_batch_size"] == 2
        a, b = simple_operands(2)
        np.testing.assert_array_equal(
            client.infer("simple_v3", simple_inputs(a, b)).as_numpy("OUTPUT1"), a - b
        )
        a, b = simple_operands(3)
        with pytest.raises(InferenceServerException, match="batch"):
            client.infer("simple_v3", simple_inputs(a, b))
    # Loaded again without the override: the auto-completed config is back.
    assert client.get_model_config("simple_v3")["max_batch_size"] == 4


# ---- concurrency --------------------------------------------------------------------------------


def test_64_concurrent_requests_are_batched(client: httpclient.InferenceServerClient) -> None:
    # A queue delay long enough that the batcher sees several of the 64 requests however slowly
    # this (shared, 2-core) machine lets the client send them; the delay is what Triton users set.
    override = {
        "backend": "onnxruntime",
        "max_batch_size": 8,
        "dynamic_batching": {"max_queue_delay_microseconds": 50_000},
    }
    with config_override(client, "simple_v3", override):
        before = model_stats(client, "simple_v3")
        operands = [simple_operands(1, offset=100 * i) for i in range(64)]
        pending = [client.async_infer("simple_v3", simple_inputs(a, b)) for a, b in operands]
        for (a, b), request in zip(operands, pending, strict=True):
            result = request.get_result(timeout=60)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
        after = model_stats(client, "simple_v3")
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == 64
    assert executions < inferences, f"{executions} executions for {inferences} inferences: no batching"
    assert any(entry["batch_size"] > 1 for entry in after["batch_stats"])


def test_64_concurrent_requests_to_a_two_instance_model(client: httpclient.InferenceServerClient) -> None:
    before = model_stats(client, "simple")
    operands = [simple_operands(2, offset=7 * i) for i in range(64)]
    pending = [
        client.async_infer("simple", simple_inputs(a, b, binary=i % 2 == 0))
        for i, (a, b) in enumerate(operands)
    ]
    for (a, b), request in zip(operands, pending, strict=True):
        result = request.get_result(timeout=60)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    after = model_stats(client, "simple")
    assert after["inference_count"] - before["inference_count"] == 128
    assert after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == 64
