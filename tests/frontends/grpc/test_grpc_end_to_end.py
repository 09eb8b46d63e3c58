"""The real engine behind the gRPC front end, driven by the official tritonclient.grpc client, with
Prometheus metrics read back from the same timing records."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from prometheus_client.core import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from packserve.core.engine import Engine, EngineOptions
from packserve.examples.simple_repository import CLASS_LABELS, build_simple_repository
from packserve.metrics import PrometheusObserver
from packserve.metrics.exposition import render
from tests.frontends.grpc.grpc_server_thread import ServerThread


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, Engine]]:
    root = build_simple_repository(Path(tmp_path_factory.mktemp("repository")))
    running = ServerThread()
    options = EngineOptions(model_repository=root, model_control_mode="explicit", load_models=("*",))
    engine = running.call(Engine.start(options))
    try:
        running.start(engine)
        yield running, engine
    finally:
        running.call(engine.shutdown(5.0))
        running.stop()


@pytest.fixture
def client(live: tuple[ServerThread, Engine]) -> Iterator[grpcclient.InferenceServerClient]:
    triton = grpcclient.InferenceServerClient(live[0].url)
    try:
        yield triton
    finally:
        triton.close()


def _simple(batch: int, offset: int = 0) -> tuple[list[grpcclient.InferInput], np.ndarray, np.ndarray]:
    a = (np.arange(16 * batch, dtype=np.int32) + offset).reshape(batch, 16)
    b = np.full((batch, 16), 7, dtype=np.int32)
    inputs = [grpcclient.InferInput(n, [batch, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs, a, b


def _observe(live: tuple[ServerThread, Engine]) -> CollectorRegistry:
    """A fresh observer on the engine (added on the loop thread, where observers are called)."""
    running, engine = live
    registry = CollectorRegistry()

    async def add() -> None:
        engine.add_observer(PrometheusObserver(registry))

    running.call(add())
    return registry


def _samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = render(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metadata_config_and_index(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_ready() and client.is_model_ready("simple")
    assert "statistics" in client.get_server_metadata().extensions
    metadata = client.get_model_metadata("simple")
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("INPUT0", "INT32", [-1, 16]),
        ("INPUT1", "INT32", [-1, 16]),
    ]
    config = client.get_model_config("simple").config
    assert config.max_batch_size == 8 and [o.name for o in config.output] == ["OUTPUT0", "OUTPUT1"]
    states = {m.name: m.state for m in client.get_model_repository_index().models}
    assert states["simple"] == "READY" and states["classifier"] == "READY"


@pytest.mark.parametrize("batch", [1, 5])
def test_infer(client: grpcclient.InferenceServerClient, batch: int) -> None:
    inputs, a, b = _simple(batch)
    result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_classification(client: grpcclient.InferenceServerClient) -> None:
    image = grpcclient.InferInput("INPUT", [2, 3, 8, 8], "FP32")
    image.set_data_from_numpy(np.random.default_rng(1).random((2, 3, 8, 8), dtype=np.float32))
    scores = client.infer("classifier", [image]).as_numpy("OUTPUT")
    wanted = [grpcclient.InferRequestedOutput("OUTPUT", class_count=3)]
    top = client.infer("classifier", [image], outputs=wanted)
    labels = top.as_numpy("OUTPUT")
    assert labels.shape == (2, 3)
    for row in range(2):
        best = int(np.argmax(scores[row]))
        value, index, label = labels[row][0].decode().split(":")
        assert int(index) == best and label == CLASS_LABELS[best]
        assert abs(float(value) - float(scores[row][best])) < 1e-5


def test_statistics_count_rows_and_requests(client: grpcclient.InferenceServerClient) -> None:
    before = client.get_inference_statistics("simple").model_stats[0]
    for batch in (1, 5):
        client.infer("simple", _simple(batch)[0])
    after = client.get_inference_statistics("simple").model_stats[0]
    assert after.inference_stats.success.count - before.inference_stats.success.count == 2
    assert after.inference_count - before.inference_count == 6


def test_unload_and_load_with_config_override(client: grpcclient.InferenceServerClient) -> None:
    config = client.get_model_config("classifier", as_json=True)["config"]
    client.unload_model("classifier")
    assert not client.is_model_ready("classifier")
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("classifier")
    assert str(caught.value.status()) in ("StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND")
    config["max_batch_size"] = 4
    config.pop("dynamic_batching", None)  # its filled-in preferred sizes assume a max of 8
    client.load_model("classifier", config=json.dumps(config))
    assert client.is_model_ready("classifier")
    assert client.get_model_config("classifier").config.max_batch_size == 4
    client.load_model("classifier")  # back to the repository's own config
    assert client.get_model_config("classifier").config.max_batch_size == 8


def test_errors(live: tuple[ServerThread, Engine], client: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nope", _simple(1)[0])
    assert str(unknown.value.status()) == "StatusCode.NOT_FOUND"
    wrong = [grpcclient.InferInput(n, [1, 15], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in wrong:
        tensor.set_data_from_numpy(np.zeros((1, 15), dtype=np.int32))
    with pytest.raises(InferenceServerException) as bad_shape:
        client.infer("simple", wrong)
    assert str(bad_shape.value.status()) == "StatusCode.INVALID_ARGUMENT"
    assert "simple" in bad_shape.value.message()
    negative = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
    negative.set_data_from_numpy(-np.ones((1, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException) as failed:
        client.infer("python_add", [negative])
    assert str(failed.value.status()) == "StatusCode.INTERNAL"
    request = service_pb2.ModelInferRequest(model_name="simple")
    request.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 16])
    request.inputs.add(name="INPUT1", datatype="INT32", shape=[1, 16])
    request.raw_input_contents.extend([b"\x00" * 64, b"\x00" * 60])
    with grpc.insecure_channel(live[0].url) as channel, pytest.raises(grpc.RpcError) as short:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert short.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model 'simple' input 'INPUT1'" in short.value.details()
    inputs, a, b = _simple(1)
    np.testing.assert_array_equal(client.infer("simple", inputs).as_numpy("OUTPUT0"), a + b)


def test_64_concurrent_requests(client: grpcclient.InferenceServerClient) -> None:
    answers: queue.Queue[tuple[int, object, object]] = queue.Queue()
    expected = {}
    for n in range(64):
        inputs, a, b = _simple(1 + n % 3, offset=n * 100)
        expected[n] = (a + b, a - b)
        client.async_infer("simple", inputs, lambda result, error, n=n: answers.put((n, result, error)))
    for _ in range(64):
        n, result, error = answers.get(timeout=60)
        assert error is None, error
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), expected[n][0])  # type: ignore[attr-defined]
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), expected[n][1])  # type: ignore[attr-defined]


def test_repeated_requests_of_one_layout_answer_their_own_data_and_id(
    client: grpcclient.InferenceServerClient,
) -> None:
    # From the second on, the native transport decodes them from the first one's wire plan.
    for n in range(4):
        inputs, a, b = _simple(2, offset=1000 * n)
        result = client.infer("simple", inputs, request_id="same-id")
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
        assert result.get_response().id == "same-id"


def test_streaming(client: grpcclient.InferenceServerClient) -> None:
    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        expected = {}
        for n in range(10):
            inputs, a, b = _simple(1 + n % 2, offset=n)
            expected[str(n)] = a + b
            client.async_stream_infer("simple", inputs, request_id=str(n))
        client.async_stream_infer("nope", _simple(1)[0], request_id="bad")
        got, errors = {}, []
        for _ in range(11):
            result, error = answers.get(timeout=60)
            if error is not None:
                errors.append(str(error))
                continue
            got[result.get_response().id] = result.as_numpy("OUTPUT0")  # type: ignore[attr-defined]
    finally:
        client.stop_stream()
    assert len(errors) == 1 and "nope" in errors[0]
    assert set(got) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value)


def test_metrics_move_by_exactly_the_requests_sent(
    live: tuple[ServerThread, Engine], client: grpcclient.InferenceServerClient
) -> None:
    registry = _observe(live)
    for batch in (1, 5, 2):
        client.infer("simple", _simple(batch)[0])
    negative = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
    negative.set_data_from_numpy(-np.ones((1, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException):
        client.infer("python_add", [negative])
    samples = _samples(registry)
    simple = frozenset({("model", "simple"), ("version", "1")})
    assert samples[("nv_inference_request_success_total", simple)] == 3
    assert samples[("nv_inference_count_total", simple)] == 8
    executions = samples[("nv_inference_exec_count_total", simple)]
    assert 1 <= executions <= 3
    assert samples[("packserve_batch_size_count", simple)] == executions
    assert samples[("packserve_batch_size_sum", simple)] == 8
    assert samples[("packserve_request_latency_seconds_count", simple)] == 3
    assert samples[("nv_inference_request_duration_us_total", simple)] > 0
    assert (
        samples[("nv_inference_request_duration_us_total", simple)]
        >= samples[("nv_inference_compute_infer_duration_us_total", simple)]
    )
    failure = frozenset({("model", "python_add"), ("version", "1"), ("reason", "BACKEND")})
    assert samples[("nv_inference_request_failure_total", failure)] == 1
    python_add = frozenset({("model", "python_add"), ("version", "1")})
    assert samples.get(("nv_inference_request_success_total", python_add)) == 0
