"""Request validation against a model spec, and reshape."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from packserve.core.validation import RequestValidator, tensor_datatype, validate_request
from packserve.errors import InvalidArgumentError, ModelExecutionError
from packserve.messages import InferRequest, RequestedOutput
from packserve.model_spec import TensorSpec
from packserve.types import DataType
from tests.fakes.core import make_spec

SPEC = make_spec(
    max_batch_size=8,
    inputs=[
        TensorSpec("INPUT0", DataType.FP32, (-1, 16)),
        TensorSpec("MASK", DataType.BOOL, (16,), optional=True),
        TensorSpec("TEXT", DataType.BYTES, (1,)),
    ],
    outputs=[TensorSpec("PROBS", DataType.FP32, (10,)), TensorSpec("HALF", DataType.FP16, (10,))],
)


def request(
    inputs: dict[str, Any] | None = None, outputs: list[RequestedOutput] | None = None, **named: Any
) -> InferRequest:
    return InferRequest(model_name="simple", inputs={**(inputs or {}), **named}, outputs=outputs)


def good_inputs(batch: int = 2) -> dict[str, np.ndarray]:
    text = np.array([[b"a"]] * batch, dtype=np.object_)
    return {"INPUT0": np.zeros((batch, 3, 16), np.float32), "TEXT": text}


def test_a_good_request_passes() -> None:
    validate_request(SPEC, request(good_inputs()))
    validate_request(SPEC, request(good_inputs(), MASK=np.zeros((2, 16), np.bool_)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"EXTRA": np.zeros((2, 1), np.float32)}, "model 'simple' has no input 'EXTRA'"),
        (
            {"INPUT0": np.zeros((2, 3, 8), np.float32)},
            r"input 'INPUT0': expected shape \[-1,-1,16\], got \[2,3,8\]",
        ),
        ({"INPUT0": np.zeros((3, 16), np.float32)}, r"expected shape \[-1,-1,16\], got \[3,16\]"),
        ({"INPUT0": np.zeros((2, 3, 16), np.int32)}, "input 'INPUT0': expected datatype FP32, got INT32"),
        ({"TEXT": np.zeros((2, 1), np.float32)}, "input 'TEXT': expected datatype BYTES, got FP32"),
        (
            {"INPUT0": np.zeros((9, 3, 16), np.float32), "TEXT": np.array([[b"a"]] * 9, dtype=object)},
            r"batch size 9 is outside 1..8",
        ),
        (
            {"INPUT0": np.zeros((0, 3, 16), np.float32), "TEXT": np.zeros((0, 1), dtype=object)},
            r"batch size 0 is outside 1..8",
        ),
        (
            {"TEXT": np.array([[b"a"]] * 3, dtype=object)},
            "input 'TEXT': batch size 3 does not match input 'INPUT0'",
        ),
        ({"INPUT0": [[1.0]]}, "input 'INPUT0': expected a tensor, got list"),
    ],
)
def test_bad_inputs_are_named(change: dict[str, np.ndarray], message: str) -> None:
    inputs = good_inputs() | change
    with pytest.raises(InvalidArgumentError, match=message):
        validate_request(SPEC, request(inputs))


def test_missing_required_input() -> None:
    with pytest.raises(InvalidArgumentError, match=r"for model 'simple'. Got input\(s\) .*missing required input\(s\) \['TEXT'\]"):
        validate_request(SPEC, request(INPUT0=np.zeros((1, 1, 16), np.float32)))


def test_outputs_are_checked() -> None:
    with pytest.raises(InvalidArgumentError, match="model 'simple' has no output 'NOPE'"):
        validate_request(SPEC, request(good_inputs(), [RequestedOutput("NOPE")]))
    with pytest.raises(InvalidArgumentError, match="unsupported type 'FP16'"):
        validate_request(SPEC, request(good_inputs(), [RequestedOutput("HALF", class_count=3)]))
    validate_request(SPEC, request(good_inputs(), [RequestedOutput("PROBS", class_count=3)]))


def test_non_batching_model_has_no_batch_dimension() -> None:
    spec = make_spec(max_batch_size=0)
    validate_request(spec, request(INPUT0=np.zeros((4,), np.float32)))
    with pytest.raises(InvalidArgumentError, match=r"expected shape \[4\], got \[1,4\]"):
        validate_request(spec, request(INPUT0=np.zeros((1, 4), np.float32)))


def test_reshape_keeps_the_batch_dimension() -> None:
    spec = make_spec(inputs=[TensorSpec("INPUT0", DataType.FP32, (4,), reshape=(2, 2))])
    req = request(INPUT0=np.arange(12, dtype=np.float32).reshape(3, 4))
    validate_request(spec, req)
    assert req.inputs["INPUT0"].shape == (3, 2, 2)
    flat = make_spec(max_batch_size=0, inputs=[TensorSpec("INPUT0", DataType.FP32, (1, 4), reshape=(4,))])
    req = request(INPUT0=np.zeros((1, 4), np.float32))
    validate_request(flat, req)
    assert req.inputs["INPUT0"].shape == (4,)


def test_tensor_datatype_of_numpy_and_other_objects() -> None:
    assert tensor_datatype(np.zeros(1, np.uint16)) is DataType.UINT16
    assert tensor_datatype(np.array([b"x"], dtype=object)) is DataType.BYTES
    assert tensor_datatype(np.zeros(1, np.complex64)) is None
    assert tensor_datatype("text") is None


def test_tensor_datatype_of_a_torch_tensor() -> None:
    torch = pytest.importorskip("torch")
    assert tensor_datatype(torch.zeros(2, dtype=torch.float16)) is DataType.FP16
    spec = make_spec(inputs=[TensorSpec("INPUT0", DataType.FP32, (4,), reshape=(2, 2))])
    req = request(INPUT0=torch.zeros((2, 4), dtype=torch.float32))
    validate_request(spec, req)
    assert tuple(req.inputs["INPUT0"].shape) == (2, 2, 2)


# A model with only fixed-shape numeric inputs: the validator's quick path applies to it.
NUMERIC = make_spec(
    max_batch_size=4,
    inputs=[TensorSpec("A", DataType.INT32, (16,)), TensorSpec("B", DataType.FP32, (2, 2), reshape=(4,))],
)


def numeric(batch: int = 2, **changes: np.ndarray) -> InferRequest:
    inputs = {"A": np.zeros((batch, 16), np.int32), "B": np.ones((batch, 2, 2), np.float32)}
    return request(inputs | changes)


def test_quick_path_accepts_and_still_reshapes() -> None:
    validator = RequestValidator(NUMERIC)
    req = numeric(3)
    validator.validate(req)
    assert req.inputs["B"].shape == (3, 4)


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (numeric(2, A=np.zeros((2, 16), np.int64)), "input 'A': expected datatype INT32, got INT64"),
        (numeric(2, A=np.zeros((2, 15), np.int32)), r"input 'A': expected shape \[-1,16\], got \[2,15\]"),
        (
            numeric(2, A=np.zeros((3, 16), np.int32)),
            "input 'B': batch size 2 does not match input 'A' batch size 3",
        ),
        (numeric(5), r"batch size 5 is outside 1..4"),
        (numeric(0), r"batch size 0 is outside 1..4"),
        (request(A=np.zeros((1, 16), np.int32)), r"missing required input\(s\) \['B'\]"),
        (numeric(1, C=np.zeros((1, 1), np.int32)), "has no input 'C'"),
        (numeric(1, A=[[0] * 16]), "input 'A': expected a tensor, got list"),
    ],
)
def test_quick_path_misses_fall_through_to_the_same_errors(req: InferRequest, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        RequestValidator(NUMERIC).validate(req)


def test_quick_path_for_a_model_without_batching() -> None:
    spec = make_spec(max_batch_size=0, inputs=[TensorSpec("A", DataType.UINT8, (2, 3))])
    validator = RequestValidator(spec)
    validator.validate(request(A=np.zeros((2, 3), np.uint8)))
    with pytest.raises(InvalidArgumentError, match=r"expected shape \[2,3\], got \[1,2,3\]"):
        validator.validate(request(A=np.zeros((1, 2, 3), np.uint8)))


def _reshape_spec(max_batch_size: int) -> Any:
    from packserve.model_spec import ModelSpec, TensorSpec, VersionPolicy

    return ModelSpec(
        name="r",
        platform="",
        backend="python",
        max_batch_size=max_batch_size,
        inputs=(TensorSpec("IN", DataType.FP32, (16,), (4, 4)),),
        outputs=(
            TensorSpec("OUT", DataType.FP32, (4, 4), (16,)),
            TensorSpec("S", DataType.FP32, (1,), ()),
            TensorSpec("V", DataType.FP32, (-1, 2), (-1,)),
        ),
        dynamic_batching=None,
        instance_groups=(),
        version_policy=VersionPolicy(),
        default_model_filename="model.py",
    )


def test_outputs_get_their_configured_dims_back_after_reshape() -> None:
    from packserve.core.validation import RequestValidator

    batching = RequestValidator(_reshape_spec(8))
    outputs = {"OUT": np.zeros((2, 16), np.float32), "S": np.zeros(2, np.float32), "V": np.zeros((2, 6), np.float32)}
    batching.restore_output_shapes(outputs)
    assert {k: v.shape for k, v in outputs.items()} == {"OUT": (2, 4, 4), "S": (2, 1), "V": (2, 3, 2)}
    plain = RequestValidator(_reshape_spec(0))
    outputs = {"OUT": np.zeros(16, np.float32)}
    plain.restore_output_shapes(outputs)
    assert outputs["OUT"].shape == (4, 4)
    with pytest.raises(ModelExecutionError, match="cannot reshape"):
        batching.restore_output_shapes({"OUT": np.zeros((2, 15), np.float32)})
