"""What an ONNX graph declares (tensor names, element types, shapes) and how a config must agree.

Used by the onnxruntime backend twice: at auto-complete, reading the `.onnx` file with `onnx`
(no session, no optimisation pass), and at load, reading the live InferenceSession. Pure functions
on the loader thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packserve.errors import ConfigError
from packserve.types import DataType

# ONNX Runtime's type strings -> protocol types. bfloat16 and complex types have no protocol type.
_ORT_TYPES: dict[str, DataType] = {
    "tensor(bool)": DataType.BOOL,
    "tensor(uint8)": DataType.UINT8,
    "tensor(uint16)": DataType.UINT16,
    "tensor(uint32)": DataType.UINT32,
    "tensor(uint64)": DataType.UINT64,
    "tensor(int8)": DataType.INT8,
    "tensor(int16)": DataType.INT16,
    "tensor(int32)": DataType.INT32,
    "tensor(int64)": DataType.INT64,
    "tensor(float16)": DataType.FP16,
    "tensor(float)": DataType.FP32,
    "tensor(double)": DataType.FP64,
    "tensor(string)": DataType.BYTES,
}

# onnx.TensorProto.DataType numbers -> the ORT type string of the same element type.
_ONNX_ELEMENT_TO_ORT: dict[int, str] = {
    1: "tensor(float)",
    2: "tensor(uint8)",
    3: "tensor(int8)",
    4: "tensor(uint16)",
    5: "tensor(int16)",
    6: "tensor(int32)",
    7: "tensor(int64)",
    8: "tensor(string)",
    9: "tensor(bool)",
    10: "tensor(float16)",
    11: "tensor(double)",
    12: "tensor(uint32)",
    13: "tensor(uint64)",
    16: "tensor(bfloat16)",
}


@dataclass(frozen=True, slots=True)
class GraphTensor:
    name: str
    type_name: str  # as ONNX Runtime names it: "tensor(float)"
    shape: tuple[int, ...]  # full shape, batch dimension included; -1 where the graph leaves it open

    @property
    def datatype(self) -> DataType | None:
        return _ORT_TYPES.get(self.type_name)


@dataclass(frozen=True, slots=True)
class GraphSignature:
    inputs: tuple[GraphTensor, ...]
    outputs: tuple[GraphTensor, ...]

    def batchable(self) -> bool:
        """Every tensor has a leading dimension the graph leaves open: it can take a batch."""
        return all(t.shape and t.shape[0] == -1 for t in (*self.inputs, *self.outputs))


@dataclass(frozen=True, slots=True)
class ConfiguredTensor:
    """A tensor as the config declares it, in the shape the backend sees (reshape applied)."""

    name: str
    datatype: DataType | None  # None when the config leaves data_type unset
    dims: tuple[int, ...] | None  # None when the config leaves dims unset


def _dim(value: Any) -> int:
    # ORT reports a symbolic or unknown dimension as a string or None.
    return value if isinstance(value, int) and value >= 0 else -1


def signature_from_session(session: Any) -> GraphSignature:
    """The signature of a live onnxruntime.InferenceSession."""

    def tensors(args: Iterable[Any]) -> tuple[GraphTensor, ...]:
        return tuple(GraphTensor(a.name, a.type, tuple(_dim(d) for d in (a.shape or ()))) for a in args)

    return GraphSignature(tensors(session.get_inputs()), tensors(session.get_outputs()))


def signature_from_file(path: Path) -> GraphSignature:
    """The signature declared in an .onnx file, read without building a session."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError...
        raise ConfigError(f"cannot read ONNX model '{path}': {exc}") from exc
    # Older exporters list initializers among the graph inputs; they are weights, not inputs.
    initializers = {init.name for init in model.graph.initializer}

    def tensors(values: Iterable[Any]) -> tuple[GraphTensor, ...]:
        result = []
        for value in values:
            tensor_type = value.type.tensor_type
            type_name = _ONNX_ELEMENT_TO_ORT.get(
                tensor_type.elem_type, f"element type {tensor_type.elem_type}"
            )
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
            result.append(GraphTensor(value.name, type_name, dims))
        return tuple(result)

    graph_inputs = [value for value in model.graph.input if value.name not in initializers]
    return GraphSignature(tensors(graph_inputs), tensors(model.graph.output))


def check_tensors(
    model: str,
    role: str,  # "input" or "output"
    configured: Sequence[ConfiguredTensor],
    graph: Sequence[GraphTensor],
    batching: bool,
) -> None:
    """Raise ConfigError naming the model and tensor when the config disagrees with the graph."""
    by_name = {tensor.name: tensor for tensor in graph}
    for tensor in configured:
        found = by_name.get(tensor.name)
        if found is None:
            known = ", ".join(t.name for t in graph) or "none"
            raise ConfigError(
                f"model '{model}': the config lists {role} '{tensor.name}' but the ONNX graph has no "
                f"such {role} (graph {role}s: {known})"
            )
        check_tensor(model, role, tensor, found, batching)


def check_tensor(model: str, role: str, tensor: ConfiguredTensor, graph: GraphTensor, batching: bool) -> None:
    graph_type = graph.datatype
    if graph_type is None:
        raise ConfigError(
            f"model '{model}', {role} '{graph.name}': the ONNX graph uses {graph.type_name}, "
            "which the KServe v2 protocol cannot carry"
        )
    if tensor.datatype is not None and tensor.datatype is not graph_type:
        raise ConfigError(
            f"model '{model}', {role} '{tensor.name}': config data type {tensor.datatype.config_name} "
            f"but the ONNX graph expects {graph_type.config_name} ({graph.type_name})"
        )
    if batching and (not graph.shape or graph.shape[0] != -1):
        raise ConfigError(
            f"model '{model}', {role} '{tensor.name}': max_batch_size > 0 needs a variable first "
            f"dimension, but the ONNX graph's shape is {list(graph.shape)}"
        )
    if tensor.dims is None:
        return
    expected = graph.shape[1:] if batching else graph.shape
    if len(tensor.dims) != len(expected) or any(
        want != -1 and got != want for got, want in zip(tensor.dims, expected, strict=False)
    ):
        batch_note = " (batch dimension excluded)" if batching else ""
        raise ConfigError(
            f"model '{model}', {role} '{tensor.name}': config dims {list(tensor.dims)} do not match "
            f"the ONNX graph's {list(expected)}{batch_note}"
        )


def check_all_inputs_configured(
    model: str, configured: Sequence[ConfiguredTensor], graph: GraphSignature
) -> None:
    names = {tensor.name for tensor in configured}
    missing = [tensor.name for tensor in graph.inputs if tensor.name not in names]
    if missing:
        raise ConfigError(
            f"model '{model}': the ONNX graph needs input(s) {', '.join(missing)} "
            "that the config does not list"
        )
