"""Infer over JSON and binary tensors, every datatype, binary outputs, classification, errors."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from packserve.errors import ModelExecutionError, QueueFullError


def _binary_request(inputs, outputs=None, parameters=None):
    """Build a binary-tensor infer body: JSON header, then each input's raw bytes."""
    header_inputs = []
    blobs = []
    for name, datatype, array in inputs:
        if datatype == "BYTES":
            blob = b"".join(struct.pack("<I", len(e)) + e for e in array.reshape(-1))
        else:
            blob = np.ascontiguousarray(array).tobytes()
        header_inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    document = {"inputs": header_inputs}
    if outputs is not None:
        document["outputs"] = outputs
    if parameters is not None:
        document["parameters"] = parameters
    header = orjson.dumps(document)
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header))}


def _split_binary(result):
    length = int(result.headers[b"inference-header-content-length"])
    header = orjson.loads(result.body[:length])
    tensors = {}
    offset = length
    for output in header["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is not None:
            tensors[output["name"]] = result.body[offset : offset + size]
            offset += size
    assert offset == len(result.body)
    return header, tensors


async def test_simple_json_infer(call, engine):
    a = list(range(16))
    b = [1] * 16
    body = orjson.dumps(
        {
            "id": "req-7",
            "inputs": [
                {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [a]},
                {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": b},
            ],
        }
    )
    result = await call("POST", "/v2/models/simple/infer", body)
    assert result.status == 200
    assert result.headers[b"content-type"] == b"application/json"
    assert result.json() == {
        "model_name": "simple",
        "model_version": "1",
        "id": "req-7",
        "outputs": [
            {"name": "OUTPUT0", "datatype": "INT32", "shape": [1, 16], "data": [x + 1 for x in a]},
            {"name": "OUTPUT1", "datatype": "INT32", "shape": [1, 16], "data": [x - 1 for x in a]},
        ],
    }
    request = engine.requests[-1]
    assert request.id == "req-7"
    assert request.inputs["INPUT0"].dtype == np.int32
    assert request.outputs is None


async def test_simple_binary_infer_with_binary_outputs(call, engine):
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 3, dtype=np.int32)
    body, headers = _binary_request(
        [("INPUT0", "INT32", a), ("INPUT1", "INT32", b)], parameters={"binary_data_output": True}
    )
    result = await call("POST", "/v2/models/simple/versions/1/infer", body, headers)
    assert result.status == 200
    assert result.headers[b"content-type"] == b"application/octet-stream"
    header, tensors = _split_binary(result)
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [128, 128]
    np.testing.assert_array_equal(np.frombuffer(tensors["OUTPUT0"], np.int32).reshape(2, 16), a + b)
    np.testing.assert_array_equal(np.frombuffer(tensors["OUTPUT1"], np.int32).reshape(2, 16), a - b)
    assert engine.requests[-1].model_version == "1"


async def test_per_output_binary_choice_and_selection(call):
    a = np.ones((1, 16), dtype=np.int32)
    body, headers = _binary_request(
        [("INPUT0", "INT32", a), ("INPUT1", "INT32", a)],
        outputs=[{"name": "OUTPUT1", "parameters": {"binary_data": True}}, {"name": "OUTPUT0"}],
    )
    result = await call("POST", "/v2/models/simple/infer", body, headers)
    header, tensors = _split_binary(result)
    assert [o["name"] for o in header["outputs"]] == ["OUTPUT1", "OUTPUT0"]
    assert header["outputs"][1]["data"] == [2] * 16
    assert np.frombuffer(tensors["OUTPUT1"], np.int32).tolist() == [0] * 16


NUMERIC = [
    ("BOOL", np.array([[True, False, True]])),
    ("UINT8", np.array([0, 255], dtype=np.uint8)),
    ("UINT16", np.array([0, 65535], dtype=np.uint16)),
    ("UINT32", np.array([0, 2**32 - 1], dtype=np.uint32)),
    ("UINT64", np.array([0, 2**64 - 1], dtype=np.uint64)),
    ("INT8", np.array([-128, 127], dtype=np.int8)),
    ("INT16", np.array([-(2**15), 2**15 - 1], dtype=np.int16)),
    ("INT32", np.array([[-(2**31)], [2**31 - 1]], dtype=np.int32)),
    ("INT64", np.array([-(2**63), 2**63 - 1], dtype=np.int64)),
    ("FP16", np.array([0.5, -2.0, 65504.0], dtype=np.float16)),
    ("FP32", np.array([[1.5, -3.25]], dtype=np.float32)),
    ("FP64", np.array([1e300, -1e-300], dtype=np.float64)),
]


@pytest.mark.parametrize("datatype,array", NUMERIC, ids=[n for n, _ in NUMERIC])
async def test_every_numeric_datatype_round_trips_json(call, engine, datatype, array):
    body = orjson.dumps(
        {"inputs": [{"name": "X", "datatype": datatype, "shape": list(array.shape), "data": array.tolist()}]}
    )
    result = await call("POST", "/v2/models/echo/infer", body)
    assert result.status == 200, result.body
    (output,) = result.json()["outputs"]
    assert output["datatype"] == datatype
    assert output["shape"] == list(array.shape)
    assert output["data"] == array.reshape(-1).tolist()
    assert engine.requests[-1].inputs["X"].dtype == array.dtype


@pytest.mark.parametrize("datatype,array", NUMERIC, ids=[n for n, _ in NUMERIC])
async def test_every_numeric_datatype_round_trips_binary(call, engine, datatype, array):
    body, headers = _binary_request([("X", datatype, array)], parameters={"binary_data_output": True})
    result = await call("POST", "/v2/models/echo/infer", body, headers)
    assert result.status == 200, result.body
    header, tensors = _split_binary(result)
    assert header["outputs"][0]["datatype"] == datatype
    np.testing.assert_array_equal(np.frombuffer(tensors["X"], array.dtype).reshape(array.shape), array)
    received = engine.requests[-1].inputs["X"]
    assert received.dtype == array.dtype and received.shape == array.shape


async def test_bytes_json_and_binary(call, engine):
    body = orjson.dumps(
        {"inputs": [{"name": "S", "datatype": "BYTES", "shape": [2, 2], "data": [["a", "bé"], ["", "d"]]}]}
    )
    result = await call("POST", "/v2/models/echo/infer", body)
    assert result.status == 200
    assert result.json()["outputs"][0]["data"] == ["a", "bé", "", "d"]
    assert engine.requests[-1].inputs["S"].tolist() == [[b"a", "bé".encode()], [b"", b"d"]]

    array = np.array([b"\x00\xff", b"", b"xyz"], dtype=np.object_)
    body, headers = _binary_request([("S", "BYTES", array)], parameters={"binary_data_output": True})
    result = await call("POST", "/v2/models/echo/infer", body, headers)
    header, tensors = _split_binary(result)
    assert tensors["S"] == b"\x02\x00\x00\x00\x00\xff\x00\x00\x00\x00\x03\x00\x00\x00xyz"
    assert header["outputs"][0]["parameters"]["binary_data_size"] == len(tensors["S"])


async def test_non_utf8_bytes_output_goes_binary_even_in_json_mode(call):
    array = np.array([b"\xff\xfe"], dtype=np.object_)
    body, headers = _binary_request([("S", "BYTES", array)])
    result = await call("POST", "/v2/models/echo/infer", body, headers)
    _header, tensors = _split_binary(result)
    assert tensors["S"] == b"\x02\x00\x00\x00\xff\xfe"


async def test_classification_output_is_encoded_as_bytes(call, engine):
    a = np.array([[5, 1, 9] + [0] * 13], dtype=np.int32)
    body, headers = _binary_request(
        [("INPUT0", "INT32", a), ("INPUT1", "INT32", np.zeros_like(a))],
        outputs=[{"name": "OUTPUT0", "parameters": {"classification": 2}}],
    )
    result = await call("POST", "/v2/models/simple/infer", body, headers)
    assert result.status == 200, result.body
    (output,) = result.json()["outputs"]
    assert output == {
        "name": "OUTPUT0",
        "datatype": "BYTES",
        "shape": [1, 2],
        "data": ["9:2", "5:0"],  # integer scores print as integers, as Triton's std::to_string
    }
    assert engine.requests[-1].outputs[0].class_count == 2


async def test_request_parameters_reach_the_engine(call, engine):
    body = orjson.dumps(
        {
            "parameters": {"priority": 2, "timeout": 5000, "custom": "x"},
            "inputs": [{"name": "X", "datatype": "INT8", "shape": [1], "data": [1]}],
        }
    )
    assert (await call("POST", "/v2/models/echo/infer", body)).status == 200
    request = engine.requests[-1]
    assert (request.priority, request.timeout_us, request.parameters) == (2, 5000, {"custom": "x"})


async def test_torch_like_outputs_are_moved_to_host(call, engine):
    class FakeGpuTensor:
        def __init__(self, array):
            self.array = array

        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return self.array

    async def infer(request):
        from packserve.messages import InferResponse

        return InferResponse("echo", "1", "", {"Y": FakeGpuTensor(np.array([1.5], dtype=np.float32))})

    engine.infer = infer
    body = orjson.dumps({"inputs": [{"name": "X", "datatype": "INT8", "shape": [1], "data": [1]}]})
    result = await call("POST", "/v2/models/echo/infer", body)
    assert result.json()["outputs"] == [{"name": "Y", "datatype": "FP32", "shape": [1], "data": [1.5]}]


@pytest.mark.parametrize(
    "error,status",
    [
        (QueueFullError("model 'simple' queue is full"), 503),
        (ModelExecutionError("model 'simple' failed"), 500),
    ],
)
async def test_engine_errors_map_to_status(call, engine, error, status):
    engine.fail_next_with = error
    body = orjson.dumps({"inputs": [{"name": "X", "datatype": "INT8", "shape": [1], "data": [1]}]})
    result = await call("POST", "/v2/models/echo/infer", body)
    assert result.status == status
    assert result.json() == {"error": str(error)}


async def test_unexpected_engine_crash_is_a_500_not_a_dropped_connection(call, engine):
    engine.fail_next_with = RuntimeError("boom")
    body = orjson.dumps({"inputs": [{"name": "X", "datatype": "INT8", "shape": [1], "data": [1]}]})
    result = await call("POST", "/v2/models/echo/infer", body)
    assert result.status == 500
    assert "boom" in result.json()["error"]
