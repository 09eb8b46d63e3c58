"""Decoding and encoding of tensors and requests, without a server."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from packserve.errors import InvalidArgumentError, ModelExecutionError
from packserve.frontends.grpc.codec import decode_infer_request, encode_infer_response
from packserve.frontends.grpc.tensors import serialize_bytes
from packserve.messages import InferResponse
from packserve.types import DataType

_TYPED = [
    ("BOOL", "bool_contents", [True, False, True, True]),
    ("INT8", "int_contents", [-128, 0, 5, 127]),
    ("INT16", "int_contents", [-300, 0, 5, 300]),
    ("INT32", "int_contents", [-(2**31), 0, 5, 2**31 - 1]),
    ("INT64", "int64_contents", [-(2**63), 0, 5, 2**63 - 1]),
    ("UINT8", "uint_contents", [0, 1, 200, 255]),
    ("UINT16", "uint_contents", [0, 1, 2000, 65535]),
    ("UINT32", "uint_contents", [0, 1, 2000, 2**32 - 1]),
    ("UINT64", "uint64_contents", [0, 1, 2000, 2**64 - 1]),
    ("FP16", "fp32_contents", [0.5, -1.25, 2.0, 1024.0]),
    ("FP32", "fp32_contents", [0.5, -1.25, 2.0, 3.5]),
    ("FP64", "fp64_contents", [0.1, -1.25, 2.0, 1e300]),
    ("BYTES", "bytes_contents", [b"a", b"", b"\x00\xff", b"long" * 10]),
]


def _request(datatype: str, shape: list[int], model: str = "m") -> service_pb2.ModelInferRequest:
    message = service_pb2.ModelInferRequest(model_name=model)
    message.inputs.add(name="X", datatype=datatype, shape=shape)
    return message


@pytest.mark.parametrize(("datatype", "field", "values"), _TYPED)
def test_typed_contents_decode_for_every_datatype(datatype: str, field: str, values: list[object]) -> None:
    message = _request(datatype, [2, 2])
    getattr(message.inputs[0].contents, field).extend(values)
    array = decode_infer_request(message).inputs["X"]
    expected_dtype = DataType.from_wire(datatype).numpy
    assert array.dtype == expected_dtype
    assert array.shape == (2, 2)
    assert array.reshape(-1).tolist() == np.array(values, dtype=expected_dtype).tolist()


@pytest.mark.parametrize(("datatype", "field", "values"), _TYPED)
def test_raw_contents_decode_for_every_datatype(datatype: str, field: str, values: list[object]) -> None:
    dtype = DataType.from_wire(datatype).numpy
    array = np.array(values, dtype=dtype).reshape(2, 2)
    message = _request(datatype, [2, 2])
    message.raw_input_contents.append(serialize_bytes(array) if datatype == "BYTES" else array.tobytes())
    decoded = decode_infer_request(message).inputs["X"]
    assert decoded.dtype == dtype
    assert decoded.tolist() == array.tolist()


def test_raw_numeric_input_is_a_view_not_a_copy() -> None:
    message = _request("FP32", [4])
    message.raw_input_contents.append(np.arange(4, dtype=np.float32).tobytes())
    decoded = decode_infer_request(message).inputs["X"]
    assert not decoded.flags.owndata
    assert not decoded.flags.writeable


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "fragment"),
    [
        (
            "FP32",
            [1, 16],
            b"\x00" * 12,
            "raw_input_contents has 12 bytes, but shape [1, 16] of FP32 needs 64",
        ),
        (
            "FP32",
            [2**30, 2**30],
            b"\x00" * 8,
            "shape [1073741824, 1073741824] of FP32 needs 4611686018427387904",
        ),
        ("INT8", [2**62, 2**62], b"", "too many elements"),
        ("FP32", [-1, 4], b"\x00" * 16, "negative dimension"),
        ("BYTES", [1000], b"\x01\x00\x00\x00a", "needs 1000 BYTES elements"),
        ("BYTES", [1], b"\x09\x00\x00\x00abc", "claims 9 bytes"),
        ("BYTES", [1], b"\x01\x00\x00\x00a\x01\x00", "truncated length"),
        ("BYTES", [3], b"\x00\x00\x00\x00" * 4, "holds 4 BYTES elements"),
        ("BF17", [1], b"\x00\x00", "unknown datatype 'BF17'"),
    ],
)
def test_bad_raw_input_names_model_and_input(
    datatype: str, shape: list[int], raw: bytes, fragment: str
) -> None:
    message = _request(datatype, shape, model="resnet")
    message.raw_input_contents.append(raw)
    with pytest.raises(InvalidArgumentError) as caught:
        decode_infer_request(message)
    assert "model 'resnet' input 'X'" in str(caught.value)
    assert fragment in str(caught.value)


def test_typed_count_mismatch_wrong_field_and_out_of_range_are_rejected() -> None:
    short = _request("INT32", [4])
    short.inputs[0].contents.int_contents.extend([1, 2, 3])
    with pytest.raises(InvalidArgumentError, match="contents has 3 elements, but shape \\[4\\] needs 4"):
        decode_infer_request(short)
    wrong_field = _request("FP32", [1])
    wrong_field.inputs[0].contents.int_contents.append(1)
    with pytest.raises(InvalidArgumentError, match="takes its data in 'fp32_contents', not 'int_contents'"):
        decode_infer_request(wrong_field)
    too_big = _request("INT8", [1])
    too_big.inputs[0].contents.int_contents.append(300)
    with pytest.raises(InvalidArgumentError, match="out of range for INT8"):
        decode_infer_request(too_big)


def test_raw_and_typed_together_and_count_mismatch_are_rejected() -> None:
    both = _request("INT32", [1])
    both.inputs[0].contents.int_contents.append(1)
    both.raw_input_contents.append(b"\x01\x00\x00\x00")
    with pytest.raises(InvalidArgumentError, match="both typed contents and raw_input_contents"):
        decode_infer_request(both)
    extra = _request("INT32", [1])
    extra.raw_input_contents.extend([b"\x01\x00\x00\x00", b"\x01\x00\x00\x00"])
    with pytest.raises(InvalidArgumentError, match="2 raw_input_contents for 1 inputs"):
        decode_infer_request(extra)
    missing = _request("INT32", [1])
    with pytest.raises(InvalidArgumentError, match="no data"):
        decode_infer_request(missing)


def test_request_fields_parameters_and_classification() -> None:
    message = _request("INT32", [0])
    message.id = "req-7"
    message.model_version = "2"
    message.parameters["priority"].uint64_param = 2
    message.parameters["timeout"].int64_param = 1500
    message.parameters["custom"].string_param = "x"
    output = message.outputs.add(name="SCORES")
    output.parameters["classification"].int64_param = 3
    message.outputs.add(name="OTHER")
    request = decode_infer_request(message)
    assert (request.id, request.model_version, request.priority, request.timeout_us) == (
        "req-7",
        "2",
        2,
        1500,
    )
    assert request.parameters == {"custom": "x"}
    assert request.outputs is not None
    assert [(o.name, o.class_count) for o in request.outputs] == [("SCORES", 3), ("OTHER", 0)]
    assert request.inputs["X"].shape == (0,)


class _FakeTorchTensor:
    """Stands in for a torch tensor on the GPU: only `.cpu().numpy()` reaches the host."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def cpu(self) -> _FakeTorchTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self._array


def test_encode_response_raw_outputs_in_order_with_bytes_and_tensor_like() -> None:
    words = np.array([[b"ab", "c\u00e9"]], dtype=np.object_)
    response = InferResponse(
        model_name="m",
        model_version="1",
        id="r1",
        outputs={
            "A": np.arange(6, dtype=np.float16).reshape(2, 3).T,
            "W": words,
            "T": _FakeTorchTensor(np.array([1, 2], dtype=np.int64)),
        },
        parameters={"flag": True, "n": 3, "ratio": 0.5, "text": "t"},
    )
    message = encode_infer_response(response)
    assert (message.model_name, message.model_version, message.id) == ("m", "1", "r1")
    assert [(o.name, o.datatype, list(o.shape)) for o in message.outputs] == [
        ("A", "FP16", [3, 2]),
        ("W", "BYTES", [1, 2]),
        ("T", "INT64", [2]),
    ]
    first = np.frombuffer(message.raw_output_contents[0], dtype=np.float16).reshape(3, 2)
    assert first.tolist() == np.arange(6, dtype=np.float16).reshape(2, 3).T.tolist()
    assert message.raw_output_contents[1] == b"\x02\x00\x00\x00ab\x03\x00\x00\x00c\xc3\xa9"
    assert message.parameters["flag"].bool_param is True
    assert message.parameters["n"].int64_param == 3
    assert message.parameters["ratio"].double_param == 0.5
    assert message.parameters["text"].string_param == "t"


def test_encode_rejects_output_without_protocol_datatype() -> None:
    response = InferResponse("m", "1", "", {"C": np.zeros(2, dtype=np.complex64)})
    with pytest.raises(ModelExecutionError, match="model 'm' output 'C': dtype complex64"):
        encode_infer_response(response)
