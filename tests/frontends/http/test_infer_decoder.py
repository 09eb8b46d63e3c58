"""InferDecoder: a JSON header seen before is decoded from its kept plan, with the same results
and the same errors as a first decode; only binary data differs between such requests."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from packserve.errors import InvalidArgumentError
from packserve.frontends.http.infer_decode import InferDecoder
from packserve.frontends.http.limits import HttpLimits


def binary_body(
    *arrays: np.ndarray, datatype: str = "INT32", extra: dict | None = None
) -> tuple[bytes, bytes]:
    header_inputs = [
        {
            "name": f"INPUT{i}",
            "datatype": datatype,
            "shape": list(a.shape),
            "parameters": {"binary_data_size": a.nbytes},
        }
        for i, a in enumerate(arrays)
    ]
    header = orjson.dumps({"inputs": header_inputs, **(extra or {})})
    return header + b"".join(a.tobytes() for a in arrays), str(len(header)).encode()


def test_same_header_reuses_one_plan_and_reads_each_bodys_tensors() -> None:
    decoder = InferDecoder(HttpLimits())
    first_body, length = binary_body(np.arange(16, dtype=np.int32).reshape(1, 16))
    second_body, same_length = binary_body(np.arange(16, 32, dtype=np.int32).reshape(1, 16))
    assert length == same_length
    first = decoder.decode("simple", "", first_body, length)
    second = decoder.decode("simple", "1", second_body, length)
    assert len(decoder._plans) == 1
    np.testing.assert_array_equal(first.request.inputs["INPUT0"], np.arange(16).reshape(1, 16))
    np.testing.assert_array_equal(second.request.inputs["INPUT0"], np.arange(16, 32).reshape(1, 16))
    assert second.request.model_version == "1"
    # Views over each body, not copies, and each request gets its own timing and containers.
    assert np.shares_memory(second.request.inputs["INPUT0"], np.frombuffer(second_body, dtype=np.uint8))
    assert first.request.timing is not second.request.timing
    assert first.request.parameters is not second.request.parameters


def test_a_kept_plan_decodes_exactly_like_a_first_decode() -> None:
    decoder = InferDecoder(HttpLimits())
    extra = {
        "id": "r1",
        "parameters": {"priority": 2, "timeout": 500, "binary_data_output": True, "custom": "x"},
        "outputs": [{"name": "OUTPUT0", "parameters": {"classification": 3, "binary_data": False}}],
    }
    body, length = binary_body(np.ones((2, 4), dtype=np.float32), datatype="FP32", extra=extra)
    decoder.decode("m", "", body, length)
    kept = decoder.decode("m", "", body, length)
    fresh = InferDecoder(HttpLimits()).decode("m", "", body, length)  # a first decode
    for decoded in (kept, fresh):
        request = decoded.request
        assert (request.id, request.priority, request.timeout_us) == ("r1", 2, 500)
        assert request.parameters == {"custom": "x"}
        assert [(o.name, o.class_count) for o in request.outputs or []] == [("OUTPUT0", 3)]
        assert decoded.binary_outputs == {"OUTPUT0": False}
        assert decoded.binary_default is True
        np.testing.assert_array_equal(request.inputs["INPUT0"], np.ones((2, 4), dtype=np.float32))


def test_binary_data_that_does_not_add_up_is_refused_even_with_a_kept_plan() -> None:
    decoder = InferDecoder(HttpLimits())
    body, length = binary_body(np.zeros((1, 16), dtype=np.int32))
    decoder.decode("simple", "", body, length)
    with pytest.raises(InvalidArgumentError, match="4 bytes of binary data follow"):
        decoder.decode("simple", "", body + b"\0" * 4, length)
    with pytest.raises(InvalidArgumentError, match="reaches past the end of the body"):
        decoder.decode("simple", "", body[:-4], length)


def test_bool_values_are_checked_on_every_request() -> None:
    decoder = InferDecoder(HttpLimits())
    good, length = binary_body(np.array([[1, 0, 1]], dtype=np.uint8), datatype="BOOL")
    decoder.decode("m", "", good, length)
    bad = good[:-1] + b"\x02"
    with pytest.raises(InvalidArgumentError, match="BOOL bytes must be 0 or 1"):
        decoder.decode("m", "", bad, length)


def test_bytes_inputs_are_read_from_each_body() -> None:
    decoder = InferDecoder(HttpLimits())

    def body_of(words: list[bytes]) -> tuple[bytes, bytes]:
        blob = b"".join(struct.pack("<I", len(w)) + w for w in words)
        header = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "TEXT",
                        "datatype": "BYTES",
                        "shape": [2],
                        "parameters": {"binary_data_size": len(blob)},
                    }
                ]
            }
        )
        return header + blob, str(len(header)).encode()

    first, length = body_of([b"ab", b"cd"])
    second, same = body_of([b"xy", b"zw"])
    assert length == same
    decoder.decode("m", "", first, length)
    assert decoder.decode("m", "", second, length).request.inputs["TEXT"].tolist() == [b"xy", b"zw"]


def test_headers_with_json_data_are_not_kept() -> None:
    decoder = InferDecoder(HttpLimits())
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "A", "datatype": "INT32", "shape": [1], "data": [7]},
                {"name": "B", "datatype": "INT32", "shape": [1], "parameters": {"binary_data_size": 4}},
            ]
        }
    )
    body = header + np.array([9], dtype=np.int32).tobytes()
    decoded = decoder.decode("m", "", body, str(len(header)).encode())
    assert list(decoded.request.inputs) == ["A", "B"]  # the header's order
    assert decoded.request.inputs["A"].tolist() == [7] and decoded.request.inputs["B"].tolist() == [9]
    assert not decoder._plans


def test_the_oldest_plan_goes_when_the_decoder_is_full() -> None:
    decoder = InferDecoder(HttpLimits(), max_plans=2)
    bodies = [binary_body(np.zeros((1, n), dtype=np.int32)) for n in (1, 2, 3)]
    for body, length in bodies:
        decoder.decode("m", "", body, length)
    assert len(decoder._plans) == 2
    kept_sizes = sorted(plan.binary_size for plan in decoder._plans.values())
    assert kept_sizes == [8, 12]


def test_errors_in_a_header_are_not_kept() -> None:
    decoder = InferDecoder(HttpLimits())
    header = b'{"inputs": [{"name": "A", "datatype": "INT33", "shape": [1], "parameters": {"binary_data_size": 4}}]}'
    for _ in range(2):
        with pytest.raises(InvalidArgumentError, match="unknown datatype"):
            decoder.decode("m", "", header + b"\0" * 4, str(len(header)).encode())
    assert not decoder._plans
