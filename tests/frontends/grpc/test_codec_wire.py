"""ModelInfer from and to wire bytes (codec_wire.py): a plan learned from one request decodes the
next request of the same layout exactly as the protobuf path does, and refuses every other layout;
answers written as bytes are the bytes protobuf writes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from packserve.errors import InvalidArgumentError
from packserve.frontends.grpc.codec import decode_infer_request, encode_infer_response
from packserve.frontends.grpc.codec_wire import WireCodec, varint
from packserve.frontends.grpc.tensors import serialize_bytes
from packserve.messages import InferRequest, InferResponse


def _message(
    tensors: dict[str, np.ndarray], model: str = "m", request_id: str = "", **fields: Any
) -> service_pb2.ModelInferRequest:
    message = service_pb2.ModelInferRequest(model_name=model, id=request_id, **fields)
    for name, array in tensors.items():
        datatype = "BYTES" if array.dtype == object else _WIRE[array.dtype.str[1:]]
        message.inputs.add(name=name, datatype=datatype, shape=array.shape)
        message.raw_input_contents.append(
            serialize_bytes(array) if array.dtype == object else array.tobytes()
        )
    return message


_WIRE = {"i4": "INT32", "f4": "FP32", "u1": "UINT8", "i8": "INT64", "f8": "FP64", "b1": "BOOL"}


def _learned(message: service_pb2.ModelInferRequest) -> WireCodec:
    payload = message.SerializeToString()
    codec = WireCodec()
    assert codec.plan_for(payload) is None
    codec.learn(payload, message, decode_infer_request(message))
    return codec


def _same(ours: InferRequest, theirs: InferRequest) -> None:
    assert (ours.model_name, ours.model_version, ours.id) == (
        theirs.model_name,
        theirs.model_version,
        theirs.id,
    )
    assert (ours.priority, ours.timeout_us, ours.parameters) == (
        theirs.priority,
        theirs.timeout_us,
        theirs.parameters,
    )
    assert ours.outputs == theirs.outputs
    assert list(ours.inputs) == list(theirs.inputs)
    for name, array in theirs.inputs.items():
        assert ours.inputs[name].dtype == array.dtype
        assert ours.inputs[name].shape == array.shape
        assert ours.inputs[name].tolist() == array.tolist()


def _layouts() -> list[tuple[str, Any]]:
    rng = np.random.default_rng(7)

    def numeric(seed: int) -> service_pb2.ModelInferRequest:
        return _message(
            {"A": rng.integers(-9, 9, (2, 16)).astype(np.int32), "B": rng.random((2, 3)).astype(np.float32)}
        )

    def with_everything(seed: int) -> service_pb2.ModelInferRequest:
        message = _message(
            {"IMAGE": rng.integers(0, 255, (1, 8, 8, 3)).astype(np.uint8)}, model="classifier", request_id="req-1",
            model_version="2",
        )  # fmt: skip
        message.parameters["priority"].int64_param = 3
        message.parameters["timeout"].int64_param = 5000
        message.parameters["tenant"].string_param = "blue"
        message.parameters["sampled"].bool_param = True
        out = message.outputs.add(name="SCORES")
        out.parameters["classification"].int64_param = 2
        message.outputs.add(name="EMBEDDING")
        return message

    def text(seed: int) -> service_pb2.ModelInferRequest:
        words = [b"ab", b"cde", b"", b"f" * (seed % 3)]
        words[0] = b"x" * (2 - seed % 3)  # same total length, other element lengths
        return _message({"TEXT": np.array(words, dtype=object).reshape(2, 2)})

    def big(seed: int) -> service_pb2.ModelInferRequest:  # entry lengths with 3-byte varints
        return _message(
            {"X": rng.random((1, 40000)).astype(np.float32), "Y": np.full((1, 1), seed, np.int64)}
        )

    return [("numeric", numeric), ("everything", with_everything), ("bytes", text), ("big", big)]


@pytest.mark.parametrize(("name", "make"), _layouts())
def test_a_learned_layout_decodes_the_next_request_as_protobuf_does(name: str, make: Any) -> None:
    codec = _learned(make(0))
    for seed in (1, 2):
        message = make(seed)
        payload = message.SerializeToString()
        plan = codec.plan_for(payload)
        assert plan is not None, f"{name}: the same layout with other data must hit the plan"
        _same(plan.decode(payload), decode_infer_request(message))


def test_decoded_numeric_inputs_are_views_of_the_payload() -> None:
    message = _message({"A": np.arange(16, dtype=np.int32).reshape(1, 16)})
    codec = _learned(message)
    payload = _message({"A": np.arange(16, 32, dtype=np.int32).reshape(1, 16)}).SerializeToString()
    plan = codec.plan_for(payload)
    assert plan is not None
    array = plan.decode(payload).inputs["A"]
    assert array.base is not None and not array.flags.writeable
    assert array.tolist() == [list(range(16, 32))]


def test_any_other_layout_misses() -> None:
    base = {"A": np.zeros((1, 4), np.int32)}
    codec = _learned(_message(base, model="mm"))
    others = [
        _message({"A": np.zeros((1, 5), np.int32)}, model="mm"),  # another size
        _message(base, model="nn"),  # same length, another model
        _message(base, model="mm", request_id=""),  # the learned one: a hit, checked below
        _message({"A": np.zeros((4, 1), np.int32)}, model="mm"),  # same bytes, another shape
        _message({"B": np.zeros((1, 4), np.int32)}, model="mm"),  # another input name
    ]
    hits = [codec.plan_for(message.SerializeToString()) is not None for message in others]
    assert hits == [False, False, True, False, False]
    payload = bytearray(others[2].SerializeToString())
    payload[-17] ^= 1  # the entry's length byte: still the same message length
    assert codec.plan_for(bytes(payload)) is None


def test_layouts_with_shared_memory_or_typed_contents_or_reordered_fields_are_not_learned() -> None:
    in_shm = _message({"A": np.zeros((1, 4), np.int32)})
    in_shm.inputs.add(name="B", datatype="INT32", shape=[1, 4])
    in_shm.inputs[1].parameters["shared_memory_region"].string_param = "r"
    typed = service_pb2.ModelInferRequest(model_name="m")
    typed.inputs.add(name="A", datatype="INT32", shape=[1, 2]).contents.int_contents.extend([1, 2])
    for message in (in_shm, typed):
        payload = message.SerializeToString()
        codec = WireCodec()
        codec.learn(payload, message, InferRequest("m", {}))
        assert codec.plan_for(payload) is None

    # Another writer may put raw_input_contents first: a valid message, but no plan for it.
    message = _message({"A": np.arange(4, dtype=np.int32).reshape(1, 4)})
    raw = message.raw_input_contents[0]
    head = service_pb2.ModelInferRequest()
    head.CopyFrom(message)
    del head.raw_input_contents[:]
    payload = b"\x3a" + varint(len(raw)) + raw + head.SerializeToString()
    assert service_pb2.ModelInferRequest.FromString(payload) == message
    codec = WireCodec()
    codec.learn(payload, message, decode_infer_request(message))
    assert codec.plan_for(payload) is None


def test_a_bytes_input_that_does_not_add_up_is_refused_on_the_plan_path_too() -> None:
    good = _message({"TEXT": np.array([b"abc", b"de"], dtype=object).reshape(1, 2)})
    codec = _learned(good)
    payload = bytearray(good.SerializeToString())
    payload[-13] = 10  # the first element's length prefix (4-byte LE) now claims 10 bytes
    plan = codec.plan_for(bytes(payload))
    assert plan is not None
    with pytest.raises(InvalidArgumentError, match="claims 10 bytes"):
        plan.decode(bytes(payload))
    with pytest.raises(InvalidArgumentError, match="claims 10 bytes"):
        decode_infer_request(service_pb2.ModelInferRequest.FromString(bytes(payload)))


def test_a_request_with_a_large_prefix_is_not_kept() -> None:
    message = _message({"A": np.zeros((1, 4), np.int32)})
    message.parameters["note"].string_param = "x" * 5000  # 5 KB before the tensors
    codec = _learned(message)
    assert codec.plan_for(message.SerializeToString()) is None


def test_plans_are_bounded_per_length() -> None:
    codec = WireCodec()
    for n in range(20):  # 20 request ids of one length: only the latest few are kept
        message = _message({"A": np.zeros((1, 4), np.int32)}, request_id=f"id-{n:02d}")
        codec.learn(message.SerializeToString(), message, decode_infer_request(message))
    kept = [
        codec.plan_for(
            _message({"A": np.zeros((1, 4), np.int32)}, request_id=f"id-{n:02d}").SerializeToString()
        )
        is not None
        for n in range(20)
    ]
    assert kept == [False] * 12 + [True] * 8


@pytest.mark.parametrize("request_id", ["", "r-42", "ü" * 70])
@pytest.mark.parametrize("version", ["", "3"])
def test_answers_are_the_bytes_protobuf_writes(request_id: str, version: str) -> None:
    outputs: dict[str, np.ndarray] = {
        "OUT": np.arange(6, dtype=np.float32).reshape(2, 3),
        "IDS": np.array([[1, 2]], dtype=np.int64),
        "NAMES": np.array([b"cat", b"dog"], dtype=object),
        "FLAGS": np.array([True, False]),
        "EMPTY": np.zeros((0, 3), dtype=np.uint8),
        "LARGE": np.ones(50000, dtype=np.float16),
    }
    response = InferResponse("model", version, request_id, outputs)
    codec = WireCodec()
    for _ in range(2):  # the head is built, then reused
        ours = codec.encode(response)
        assert ours == encode_infer_response(response).SerializeToString()
    parsed = service_pb2.ModelInferResponse.FromString(ours)
    assert parsed.id == request_id and parsed.model_version == version
    assert [tuple(o.shape) for o in parsed.outputs] == [a.shape for a in outputs.values()]
