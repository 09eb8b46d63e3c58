"""Checking a request against its model's config before it joins a queue.

`validate_request` raises InvalidArgumentError naming the model, the tensor, what was expected and
what came; a request that passes fits its model (and max_batch_size), so the batcher and backends
never see a malformed one. It also applies the config's `reshape`, giving each input the shape the
backend expects. Runs on the event-loop thread; the request still belongs to the caller's task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from packserve.core.wording import missing_inputs_message
from packserve.errors import InvalidArgumentError, ModelExecutionError
from packserve.messages import InferRequest
from packserve.model_spec import ModelSpec, TensorSpec
from packserve.types import DataType

# Output types Triton can turn into a classification result.
CLASSIFIABLE = frozenset(
    {
        DataType.UINT8,
        DataType.UINT16,
        DataType.UINT32,
        DataType.UINT64,
        DataType.INT8,
        DataType.INT16,
        DataType.INT32,
        DataType.INT64,
        DataType.FP32,
        DataType.FP64,
    }
)

_TORCH_TYPES = {
    "bool": DataType.BOOL,
    "uint8": DataType.UINT8,
    "uint16": DataType.UINT16,
    "uint32": DataType.UINT32,
    "uint64": DataType.UINT64,
    "int8": DataType.INT8,
    "int16": DataType.INT16,
    "int32": DataType.INT32,
    "int64": DataType.INT64,
    "float16": DataType.FP16,
    "float32": DataType.FP32,
    "float64": DataType.FP64,
}


def tensor_datatype(tensor: Any) -> DataType | None:
    """The DataType of a numpy array or a torch tensor (torch is never imported for this);
    None for anything else or a dtype the protocol has no name for."""
    dtype = getattr(tensor, "dtype", None)
    if dtype is None:
        return None
    if type(tensor).__module__.startswith("torch"):
        # str(torch.float32) == "torch.float32"
        return _TORCH_TYPES.get(str(dtype).removeprefix("torch."))
    try:
        return DataType.from_numpy(dtype)
    except (KeyError, TypeError):
        return None


def format_shape(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


class RequestValidator:
    """`validate_request` for one spec, with the per-input expectations worked out once: the
    engine keeps one per loaded model, since every request is checked on the event loop. A
    numpy input of the expected dtype and a fixed shape costs a few comparisons; anything else
    (torch tensors, BYTES, variable dims, an error to explain) takes the general checks."""

    __slots__ = ("_batching", "_fast", "_max_batch", "_output_dims", "_reshapes", "_spec")

    def __init__(self, spec: ModelSpec) -> None:
        self._spec = spec
        self._batching = spec.batching
        self._max_batch = spec.max_batch_size
        self._reshapes = any(t.reshape is not None and t.reshape != t.dims for t in spec.inputs)
        # Outputs the backend produces in their `reshape` shape, answered in their `dims` shape.
        # One variable dimension is resolved by the element count; with more, outputs stay as produced.
        self._output_dims = {
            t.name: t.dims
            for t in spec.outputs
            if t.reshape is not None and t.reshape != t.dims and sum(1 for d in t.dims if d == -1) <= 1
        }
        # Input name -> (numpy dtype, full expected shape) for numeric inputs without -1 dims.
        self._fast: dict[str, tuple[np.dtype[Any], tuple[int, ...]]] = {}
        for tensor_spec in spec.inputs:
            if tensor_spec.datatype is DataType.BYTES or -1 in tensor_spec.dims:
                continue
            self._fast[tensor_spec.name] = (tensor_spec.datatype.numpy, tensor_spec.dims)

    def validate(self, request: InferRequest) -> None:
        """Raise InvalidArgumentError unless `request` fits the spec; reshape inputs as configured."""
        spec = self._spec
        if len(request.inputs) != len(spec.inputs) or not self._fast_inputs_fit(request):
            _check_inputs(spec, request)
        if request.outputs is not None:
            _check_outputs(spec, request)
        if self._reshapes:
            _apply_reshape(spec, request)

    def restore_output_shapes(self, outputs: dict[str, Any]) -> None:
        """Give outputs with a config `reshape` their declared `dims` back (Triton does, so dims
        [4,4] reshape [16] answers [N,4,4] and dims [1] reshape [] answers [N,1])."""
        for name, dims in self._output_dims.items():
            tensor = outputs.get(name)
            if tensor is None:
                continue
            shape = (int(tensor.shape[0]), *dims) if self._batching and len(tensor.shape) else dims
            try:
                outputs[name] = tensor.reshape(shape)
            except (ValueError, RuntimeError) as exc:
                raise ModelExecutionError(
                    f"model '{self._spec.name}' output '{name}': cannot reshape "
                    f"{format_shape(tensor.shape)} to the configured dims {format_shape(shape)}: {exc}"
                ) from exc

    def _fast_inputs_fit(self, request: InferRequest) -> bool:
        """True when every input is a numpy array of the right dtype and shape, with one batch
        size within max_batch_size; False means "look closer", not "invalid"."""
        fast = self._fast
        batching = self._batching
        rows = -1
        for name, tensor in request.inputs.items():
            rule = fast.get(name)
            if rule is None or type(tensor) is not np.ndarray or tensor.dtype != rule[0]:
                return False
            shape = tensor.shape
            if batching:
                if shape[1:] != rule[1] or (rows >= 0 and shape[0] != rows):
                    return False
                rows = shape[0]
            elif shape != rule[1]:
                return False
        return not batching or 1 <= rows <= self._max_batch


def validate_request(spec: ModelSpec, request: InferRequest) -> None:
    """Raise InvalidArgumentError unless `request` fits `spec`; reshape inputs as configured."""
    RequestValidator(spec).validate(request)


def _check_inputs(spec: ModelSpec, request: InferRequest) -> None:
    model = spec.name
    batching = spec.batching
    inputs = request.inputs
    batch_size = -1
    batch_source = ""
    for name, tensor in inputs.items():
        tensor_spec = spec.input(name)
        if tensor_spec is None:
            known = ", ".join(t.name for t in spec.inputs)
            raise InvalidArgumentError(f"model '{model}' has no input '{name}' (inputs: {known})")
        shape = _shape_of(model, name, tensor)
        _check_datatype(model, tensor_spec, tensor)
        _check_shape(spec, tensor_spec, shape)
        if batching:
            rows = shape[0]
            if batch_size < 0:
                batch_size, batch_source = rows, name
            elif rows != batch_size:
                raise InvalidArgumentError(
                    f"model '{model}' input '{name}': batch size {rows} does not match "
                    f"input '{batch_source}' batch size {batch_size}"
                )
    if len(inputs) < len(spec.inputs):
        missing = [t.name for t in spec.inputs if not t.optional and t.name not in inputs]
        if missing:
            required = sum(1 for t in spec.inputs if not t.optional)
            raise InvalidArgumentError(
                missing_inputs_message(
                    model, required, len(spec.inputs), list(inputs), missing, request.id
                )
            )


def _shape_of(model: str, name: str, tensor: Any) -> tuple[int, ...]:
    shape = getattr(tensor, "shape", None)
    if shape is None:
        raise InvalidArgumentError(
            f"model '{model}' input '{name}': expected a tensor, got {type(tensor).__name__}"
        )
    return tuple(int(d) for d in shape)


def _check_datatype(model: str, tensor_spec: TensorSpec, tensor: Any) -> None:
    got = tensor_datatype(tensor)
    if got is not tensor_spec.datatype:
        got_name = got.wire_name if got is not None else str(getattr(tensor, "dtype", "?"))
        raise InvalidArgumentError(
            f"model '{model}' input '{tensor_spec.name}': expected datatype "
            f"{tensor_spec.datatype.wire_name}, got {got_name}"
        )


def _check_shape(spec: ModelSpec, tensor_spec: TensorSpec, shape: tuple[int, ...]) -> None:
    model = spec.name
    dims = tensor_spec.dims
    batching = spec.batching
    expected = (-1, *dims) if batching else dims
    if len(shape) != len(expected) or any(e != -1 and e != g for e, g in zip(expected, shape, strict=True)):
        raise InvalidArgumentError(
            f"model '{model}' input '{tensor_spec.name}': expected shape {format_shape(expected)}, "
            f"got {format_shape(shape)}"
        )
    if batching:
        rows = shape[0]
        if rows < 1 or rows > spec.max_batch_size:
            raise InvalidArgumentError(
                f"model '{model}' input '{tensor_spec.name}': batch size {rows} is outside "
                f"1..{spec.max_batch_size} (max_batch_size {spec.max_batch_size})"
            )


def _check_outputs(spec: ModelSpec, request: InferRequest) -> None:
    model = spec.name
    assert request.outputs is not None
    for requested in request.outputs:
        output = spec.output(requested.name)
        if output is None:
            known = ", ".join(t.name for t in spec.outputs)
            raise InvalidArgumentError(f"model '{model}' has no output '{requested.name}' (outputs: {known})")
        if requested.class_count < 0:
            raise InvalidArgumentError(
                f"model '{model}' output '{requested.name}': class_count must be >= 0, "
                f"got {requested.class_count}"
            )
        if requested.class_count > 0 and output.datatype not in CLASSIFIABLE:
            raise InvalidArgumentError(
                f"model '{model}' output '{requested.name}': class result not available for output "
                f"due to unsupported type '{output.datatype.wire_name}'"
            )


def _apply_reshape(spec: ModelSpec, request: InferRequest) -> None:
    batching = spec.batching
    for tensor_spec in spec.inputs:
        target = tensor_spec.reshape
        if target is None or target == tensor_spec.dims:
            continue
        tensor = request.inputs.get(tensor_spec.name)
        if tensor is None:
            continue
        shape = (int(tensor.shape[0]), *target) if batching else target
        try:
            request.inputs[tensor_spec.name] = tensor.reshape(shape)
        except (ValueError, RuntimeError) as exc:  # numpy: ValueError, torch: RuntimeError
            raise InvalidArgumentError(
                f"model '{spec.name}' input '{tensor_spec.name}': cannot reshape "
                f"{format_shape(tensor.shape)} to {format_shape(shape)}: {exc}"
            ) from exc
