"""Requests for the example `simple` model (INT32 INPUT0/INPUT1 [-1, 16] -> sum, difference),
shared by the end-to-end test modules."""

from __future__ import annotations

from typing import Any

import numpy as np
import tritonclient.http as httpclient


def simple_operands(batch: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two INT32 [batch, 16] operands whose sum and difference differ row by row."""
    a = (np.arange(batch * 16, dtype=np.int32) + offset).reshape(batch, 16)
    b = np.full((batch, 16), 3, dtype=np.int32) - np.arange(16, dtype=np.int32)
    return a, b


def simple_inputs(a: np.ndarray, b: np.ndarray, binary: bool = True) -> list[httpclient.InferInput]:
    inputs = [
        httpclient.InferInput("INPUT0", list(a.shape), "INT32"),
        httpclient.InferInput("INPUT1", list(b.shape), "INT32"),
    ]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    return inputs


def json_simple_request(
    shape: list[int], datatype: str = "INT32", names: tuple[str, ...] = ("INPUT0", "INPUT1")
) -> dict[str, Any]:
    """A raw JSON infer body, for requests tritonclient refuses to build."""
    count = int(np.prod(shape))
    return {
        "inputs": [
            {"name": n, "datatype": datatype, "shape": shape, "data": list(range(count))} for n in names
        ]
    }
