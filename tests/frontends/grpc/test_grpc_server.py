"""The gRPC front end over the fake engine, driven by the official tritonclient.grpc client."""

from __future__ import annotations

import json
import queue
from collections.abc import Callable

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from packserve.frontends.grpc import GrpcOptions
from tests.fakes.engine import FakeEngine
from tests.frontends.grpc.grpc_server_thread import ServerThread


def _simple_inputs(batch: int, offset: int = 0) -> tuple[list[grpcclient.InferInput], np.ndarray, np.ndarray]:
    a = (np.arange(16 * batch, dtype=np.int32) + offset).reshape(batch, 16)
    b = np.full((batch, 16), 3, dtype=np.int32)
    inputs = [
        grpcclient.InferInput("INPUT0", [batch, 16], "INT32"),
        grpcclient.InferInput("INPUT1", [batch, 16], "INT32"),
    ]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return inputs, a, b


def _status_of(error: InferenceServerException) -> str:
    return str(error.status())


def test_health_metadata_and_config(client: grpcclient.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("simple") and not client.is_model_ready("nope")
    server = client.get_server_metadata()
    assert server.name == "packserve" and "statistics" in server.extensions
    metadata = client.get_model_metadata("simple")
    assert metadata.versions == ["1"] and metadata.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("INPUT0", "INT32", [-1, 16]),
        ("INPUT1", "INT32", [-1, 16]),
    ]
    config = client.get_model_config("simple").config
    assert config.name == "simple" and config.max_batch_size == 8
    assert [i.name for i in config.input] == ["INPUT0", "INPUT1"]
    assert list(config.input[0].dims) == [16]


@pytest.mark.parametrize("batch", [1, 5])
def test_infer_batches(client: grpcclient.InferenceServerClient, batch: int) -> None:
    inputs, a, b = _simple_inputs(batch)
    result = client.infer("simple", inputs, request_id=f"batch-{batch}")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    response = result.get_response()
    assert response.id == f"batch-{batch}" and response.model_version == "1"


def test_infer_bytes_and_fp16_round_trip(client: grpcclient.InferenceServerClient) -> None:
    for data in (
        np.array([b"one", b"", b"\x00three"], dtype=np.object_),
        np.array([0.5, -2.0], dtype=np.float16),
    ):
        tensor = grpcclient.InferInput("INPUT", list(data.shape), "BYTES" if data.dtype == object else "FP16")
        tensor.set_data_from_numpy(data)
        got = client.infer("echo", [tensor]).as_numpy("INPUT")
        assert got.tolist() == data.tolist()


def test_typed_contents_through_the_wire(server: ServerThread) -> None:
    request = service_pb2.ModelInferRequest(model_name="echo")
    tensor = request.inputs.add(name="INPUT", datatype="UINT16", shape=[3])
    tensor.contents.uint_contents.extend([1, 2, 65535])
    with grpc.insecure_channel(server.url) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert response.outputs[0].datatype == "UINT16"
    assert np.frombuffer(response.raw_output_contents[0], dtype=np.uint16).tolist() == [1, 2, 65535]


def test_classification_parameter(client: grpcclient.InferenceServerClient, engine: FakeEngine) -> None:
    tensor = grpcclient.InferInput("INPUT", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.array([[0.1, 0.7, 0.05, 0.15]], dtype=np.float32))
    output = grpcclient.InferRequestedOutput("OUTPUT", class_count=2)
    result = client.infer("scores", [tensor], outputs=[output])
    top = result.as_numpy("OUTPUT")
    assert top.shape == (1, 2)
    assert [entry.split(b":")[1] for entry in top[0]] == [b"1", b"3"]
    assert engine.last_request is not None and engine.last_request.outputs is not None
    assert engine.last_request.outputs[0].class_count == 2


def test_statistics_and_repository(client: grpcclient.InferenceServerClient, engine: FakeEngine) -> None:
    inputs, _, _ = _simple_inputs(1)
    client.infer("simple", inputs)
    stats = client.get_inference_statistics("simple").model_stats
    assert len(stats) == 1 and stats[0].inference_count == 1
    assert stats[0].inference_stats.success.count == 1 and stats[0].inference_stats.queue.ns == 100
    assert stats[0].batch_stats[0].compute_infer.ns == 6
    everything = client.get_inference_statistics().model_stats
    assert {s.name for s in everything} == {name for name in engine.models if engine.model_ready(name)}
    index = client.get_model_repository_index().models
    assert {(m.name, m.state) for m in index} >= {("simple", "READY"), ("busy", "READY")}


def test_unload_then_load_with_config_override(
    server: ServerThread, client: grpcclient.InferenceServerClient, engine: FakeEngine
) -> None:
    client.unload_model("simple", unload_dependents=True)
    assert engine.unload_calls == [("simple", True)]
    assert not client.is_model_ready("simple")
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert index["simple"].state == "UNAVAILABLE" and index["simple"].reason == "unloaded"
    ready_only = service_pb2.RepositoryIndexRequest(ready=True)
    with grpc.insecure_channel(server.url) as channel:
        names = {
            m.name
            for m in service_pb2_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(ready_only).models
        }
    assert "simple" not in names
    inputs, _, _ = _simple_inputs(1)
    with pytest.raises(InferenceServerException) as not_ready:
        client.infer("simple", inputs)
    assert _status_of(not_ready.value) == "StatusCode.UNAVAILABLE"
    override = json.dumps({"max_batch_size": 4})
    client.load_model("simple", config=override, files={"file:1/model.onnx": b"\x08\x01"})
    assert engine.load_calls[-1] == ("simple", override, {"1/model.onnx": b"\x08\x01"})
    assert client.is_model_ready("simple")


@pytest.mark.parametrize(
    ("call", "status", "fragment"),
    [
        (lambda c: c.get_model_metadata("nope"), "StatusCode.NOT_FOUND", "unknown model 'nope'"),
        (lambda c: c.get_model_config("nope"), "StatusCode.NOT_FOUND", "unknown model 'nope'"),
        (lambda c: c.get_inference_statistics("nope"), "StatusCode.NOT_FOUND", "unknown model 'nope'"),
        (lambda c: c.load_model("nope"), "StatusCode.INVALID_ARGUMENT", "no such model"),
        (lambda c: c.load_model("simple", config="{not json"), "StatusCode.INVALID_ARGUMENT", "not JSON"),
        (lambda c: c.unload_model("nope"), "StatusCode.NOT_FOUND", "unknown model 'nope'"),
        (
            lambda c: c.load_model("simple", files={"file:1/model.onnx": b"x"}),
            "StatusCode.INVALID_ARGUMENT",
            "'file:' parameters need a 'config' parameter",
        ),
        (lambda c: c.infer("failing", []), "StatusCode.INTERNAL", "division by zero"),
        (lambda c: c.infer("busy", []), "StatusCode.UNAVAILABLE", "queue is full"),
        (lambda c: c.infer("simple", []), "StatusCode.INVALID_ARGUMENT", "missing input 'INPUT0'"),
    ],
)
def test_errors_map_to_status_codes(
    client: grpcclient.InferenceServerClient,
    call: Callable[[grpcclient.InferenceServerClient], object],
    status: str,
    fragment: str,
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        call(client)
    assert _status_of(caught.value) == status
    assert fragment in caught.value.message()
    assert client.is_server_live()


def _raw_request(datatype: str, shape: list[int], raw: list[bytes]) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="echo")
    request.inputs.add(name="INPUT", datatype=datatype, shape=shape)
    request.raw_input_contents.extend(raw)
    return request


def test_bad_wire_input_is_invalid_argument_and_server_keeps_serving(
    server: ServerThread, client: grpcclient.InferenceServerClient
) -> None:
    both = _raw_request("INT32", [1], [b"\x01\x00\x00\x00"])
    both.inputs[0].contents.int_contents.append(1)
    typed_short = service_pb2.ModelInferRequest(model_name="echo")
    typed_short.inputs.add(name="INPUT", datatype="INT32", shape=[2]).contents.int_contents.append(1)
    cases = [
        (_raw_request("FP32", [1, 16], [b"\x00" * 12]), "raw_input_contents has 12 bytes"),
        (_raw_request("NOPE", [1], [b"\x00"]), "unknown datatype 'NOPE'"),
        (_raw_request("FP32", [2**31, 2**31, 2**31], [b"\x00" * 4]), "too many elements"),
        (_raw_request("FP32", [2**20, 2**20], [b"\x00" * 4]), "needs 4398046511104"),
        (typed_short, "contents has 1 elements"),
        (both, "both typed contents and raw_input_contents"),
    ]
    with grpc.insecure_channel(server.url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for request, fragment in cases:
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(request)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "model 'echo' input 'INPUT'" in caught.value.details()
            assert fragment in caught.value.details()
    inputs, a, b = _simple_inputs(1)
    np.testing.assert_array_equal(client.infer("simple", inputs).as_numpy("OUTPUT0"), a + b)


def test_64_concurrent_requests_all_correct(
    client: grpcclient.InferenceServerClient, engine: FakeEngine
) -> None:
    engine.delay_s = 0.01  # so the requests overlap in the engine
    answers: queue.Queue[tuple[int, object, object]] = queue.Queue()
    expected = {}
    for n in range(64):
        inputs, a, b = _simple_inputs(1 + n % 5, offset=n * 1000)
        expected[n] = a + b
        client.async_infer(
            "simple", inputs, lambda result, error, n=n: answers.put((n, result, error)), request_id=str(n)
        )
    for _ in range(64):
        n, result, error = answers.get(timeout=30)
        assert error is None
        assert result.get_response().id == str(n)  # type: ignore[attr-defined]
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), expected[n])  # type: ignore[attr-defined]


def test_streaming_answers_each_request_and_survives_errors(client: grpcclient.InferenceServerClient) -> None:
    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        expected = {}
        for n in range(6):
            inputs, a, b = _simple_inputs(1, offset=n)
            expected[str(n)] = a - b
            client.async_stream_infer("simple", inputs, request_id=str(n))
        client.async_stream_infer("nope", [], request_id="bad")
        client.async_stream_infer(
            "simple", _simple_inputs(1, offset=99)[0], request_id="after", enable_empty_final_response=True
        )
        got, errors = {}, []
        for _ in range(8):
            result, error = answers.get(timeout=30)
            if error is not None:
                errors.append(str(error))
            else:
                response = result.get_response()  # type: ignore[attr-defined]
                got[response.id] = result.as_numpy("OUTPUT1")  # type: ignore[attr-defined]
                if response.id == "after":
                    assert response.parameters["triton_final_response"].bool_param
    finally:
        client.stop_stream()
    assert len(errors) == 1 and "unknown model 'nope'" in errors[0]
    assert set(got) == {*expected, "after"}
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value)


def test_grpc_health_service_follows_engine_readiness(server: ServerThread, engine: FakeEngine) -> None:
    with grpc.insecure_channel(server.url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        engine.ready = False
        assert (
            health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        )
        with pytest.raises(grpc.RpcError) as caught:
            health.Check(health_pb2.HealthCheckRequest(service="other"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_large_messages_pass_and_limits_are_configurable() -> None:
    big = np.zeros(8 * 1024 * 1024, dtype=np.uint8)  # 8 MiB, twice gRPC's default limit
    for limit, succeeds in ((256 * 1024 * 1024, True), (1024 * 1024, False)):
        running = ServerThread(GrpcOptions(max_receive_message_bytes=limit, max_send_message_bytes=limit))
        try:
            running.start(FakeEngine())
            triton = grpcclient.InferenceServerClient(running.url)
            tensor = grpcclient.InferInput("INPUT", [big.size], "UINT8")
            tensor.set_data_from_numpy(big)
            if succeeds:
                assert triton.infer("echo", [tensor]).as_numpy("INPUT").size == big.size
            else:
                with pytest.raises(InferenceServerException) as caught:
                    triton.infer("echo", [tensor])
                assert _status_of(caught.value) == "StatusCode.RESOURCE_EXHAUSTED"
            triton.close()
        finally:
            running.stop()


def test_start_fails_clearly_when_the_port_is_taken(server: ServerThread) -> None:
    assert server.server is not None
    second = ServerThread(port=server.server.port)
    try:
        with pytest.raises(OSError, match="cannot bind"):
            second.start(FakeEngine())
    finally:
        second.stop()
