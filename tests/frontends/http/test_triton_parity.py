"""Raw binary bodies and reserved parameters at the HTTP front end (the differential suite checks
the same against the real Triton)."""

from __future__ import annotations

import orjson
import pytest

from packserve.errors import InvalidArgumentError
from packserve.frontends.http.raw_body import raw_binary_header

INFER = "/v2/models/simple/infer"


def test_raw_header_batching_model_is_one_row_and_asks_binary_outputs() -> None:
    header = orjson.loads(raw_binary_header("m", [("IN", "FP32", [-1, 4, 4])], 64, batching=True))
    assert header["inputs"] == [
        {"name": "IN", "datatype": "FP32", "shape": [1, 4, 4], "parameters": {"binary_data_size": 64}}
    ]
    assert header["parameters"] == {"binary_data_output": True}


def test_raw_header_non_batching_model_keeps_its_shape() -> None:
    header = orjson.loads(raw_binary_header("m", [("IN", "BYTES", [2])], 10, batching=False))
    assert header["inputs"][0]["shape"] == [2]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([("A", "FP32", [4]), ("B", "FP32", [4])], "exactly one input; model 'm' has 2"),
        ([("A", "FP32", [-1, -1])], "variable shape"),
    ],
)
def test_raw_header_refusals(inputs, message) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        raw_binary_header("m", inputs, 16, batching=True)


async def test_raw_body_to_a_two_input_model_is_a_clear_400(call) -> None:
    result = await call("POST", INFER, b"\x00" * 64, {"Inference-Header-Content-Length": "0"})
    assert result.status == 400
    assert "exactly one input" in result.json()["error"]


async def test_reserved_parameters_are_refused(call) -> None:
    body = orjson.dumps(
        {
            "parameters": {"triton_x": 1},
            "inputs": [
                {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [0] * 16},
                {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [0] * 16},
            ],
        }
    )
    result = await call("POST", INFER, body, {})
    assert result.status == 400
    assert "reserved for Triton usage" in result.json()["error"]
