"""Tensor bytes on the gRPC wire <-> numpy arrays.

Inputs arrive either as `raw_input_contents` (little-endian bytes; BYTES elements each prefixed by a
4-byte little-endian length) or as typed `contents`. Every size is checked against the bytes that
actually arrived before anything is allocated, so a lying shape cannot make the server allocate.
Raw inputs become read-only `np.frombuffer` views of the message: no copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from packserve.core.wording import triton_request_prefix
from packserve.errors import InvalidArgumentError, ModelExecutionError
from packserve.messages import to_host
from packserve.types import DataType

_LENGTH_PREFIX = 4
# numpy cannot index more elements than this; a larger shape is a client error, not a MemoryError.
_MAX_ELEMENTS = 2**63 - 1

# Which `InferTensorContents` field carries each type. FP16 has none in the protocol; we accept it
# through fp32_contents (every FP16 value is exactly representable in FP32).
_TYPED_FIELD: dict[DataType, str] = {
    DataType.BOOL: "bool_contents",
    DataType.INT8: "int_contents",
    DataType.INT16: "int_contents",
    DataType.INT32: "int_contents",
    DataType.INT64: "int64_contents",
    DataType.UINT8: "uint_contents",
    DataType.UINT16: "uint_contents",
    DataType.UINT32: "uint_contents",
    DataType.UINT64: "uint64_contents",
    DataType.FP16: "fp32_contents",
    DataType.FP32: "fp32_contents",
    DataType.FP64: "fp64_contents",
    DataType.BYTES: "bytes_contents",
}


@dataclass(frozen=True, slots=True)
class WireType:
    """A datatype with what decoding needs read off once: enum properties are slow on the hot path."""

    datatype: DataType
    wire_name: str
    numpy: np.dtype
    byte_size: int
    typed_field: str
    is_bytes: bool


_WIRE_TYPES: dict[str, WireType] = {
    t.wire_name: WireType(t, t.wire_name, t.numpy, t.byte_size, _TYPED_FIELD[t], t is DataType.BYTES)
    for t in DataType
}
# Output dtype -> wire name, filled as dtypes are first seen (np.dtype hashes in C).
_OUTPUT_WIRE_NAMES: dict[np.dtype, str] = {}


def _where(model: str, tensor: str) -> str:
    return f"model '{model}' input '{tensor}'"


def parse_datatype(model: str, tensor: str, wire_name: str) -> WireType:
    try:
        return _WIRE_TYPES[wire_name]
    except KeyError:
        known = ", ".join(t.wire_name for t in DataType)
        raise InvalidArgumentError(
            f"{_where(model, tensor)}: unknown datatype '{wire_name}' (expected one of {known})"
        ) from None


def element_count(model: str, tensor: str, shape: tuple[int, ...]) -> int:
    """Elements in `shape`, computed with Python ints so no product can overflow."""
    count = 1
    for dim in shape:
        if dim < 0:
            raise InvalidArgumentError(
                f"{_where(model, tensor)}: shape {list(shape)} has a negative dimension"
            )
        count *= dim
    if count > _MAX_ELEMENTS:
        raise InvalidArgumentError(f"{_where(model, tensor)}: shape {list(shape)} has too many elements")
    return count


def decode_raw(
    model: str,
    tensor: str,
    datatype: WireType,
    shape: tuple[int, ...],
    count: int,
    raw: bytes,
    request_id: str = "",
) -> np.ndarray:
    if datatype.is_bytes:
        return _decode_raw_bytes(model, tensor, shape, count, raw)
    expected = count * datatype.byte_size
    if len(raw) != expected:
        # Triton's wording first (clients match on it), then what the shape needs.
        raise InvalidArgumentError(
            f"{triton_request_prefix(request_id)} input byte size mismatch for input '{tensor}' for model "
            f"'{model}'. Expected {expected}, got {len(raw)} ({_where(model, tensor)}: raw_input_contents "
            f"has {len(raw)} bytes, but shape {list(shape)} of {datatype.wire_name} needs {expected})"
        )
    return np.frombuffer(raw, dtype=datatype.numpy).reshape(shape)


def _decode_raw_bytes(model: str, tensor: str, shape: tuple[int, ...], count: int, raw: bytes) -> np.ndarray:
    # Each element takes at least its 4-byte length, which bounds the count before any allocation.
    if count * _LENGTH_PREFIX > len(raw):
        raise InvalidArgumentError(
            f"{_where(model, tensor)}: shape {list(shape)} needs {count} BYTES elements, but "
            f"raw_input_contents has only {len(raw)} bytes"
        )
    elements: list[bytes] = []
    offset, end = 0, len(raw)
    while offset < end:
        if offset + _LENGTH_PREFIX > end:
            raise InvalidArgumentError(
                f"{_where(model, tensor)}: BYTES element {len(elements)} has a truncated length"
            )
        length = int.from_bytes(raw[offset : offset + _LENGTH_PREFIX], "little")
        offset += _LENGTH_PREFIX
        if offset + length > end:
            raise InvalidArgumentError(
                f"{_where(model, tensor)}: BYTES element {len(elements)} claims {length} bytes, "
                f"only {end - offset} remain"
            )
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != count:
        raise InvalidArgumentError(
            f"{_where(model, tensor)}: raw_input_contents holds {len(elements)} BYTES elements, "
            f"but shape {list(shape)} needs {count}"
        )
    return _object_array(elements, shape)


def _object_array(elements: list[bytes], shape: tuple[int, ...]) -> np.ndarray:
    array = np.empty(len(elements), dtype=np.object_)
    array[:] = elements
    return array.reshape(shape)


def decode_typed(
    model: str, tensor: str, datatype: WireType, shape: tuple[int, ...], count: int, contents: Any
) -> np.ndarray:
    field = datatype.typed_field
    for descriptor, _ in contents.ListFields():
        if descriptor.name != field:
            raise InvalidArgumentError(
                f"{_where(model, tensor)}: datatype {datatype.wire_name} takes its data in '{field}', "
                f"not '{descriptor.name}'"
            )
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidArgumentError(
            f"{_where(model, tensor)}: contents has {len(values)} elements, "
            f"but shape {list(shape)} needs {count}"
        )
    if datatype.is_bytes:
        return _object_array(list(values), shape)
    if datatype.numpy.kind in "iu" and datatype.byte_size < 4:
        _check_range(model, tensor, datatype, values)
    return np.asarray(values, dtype=datatype.numpy).reshape(shape)


def _check_range(model: str, tensor: str, datatype: WireType, values: Any) -> None:
    # int_contents / uint_contents are 32-bit; narrower types must not wrap silently.
    if not values:
        return
    info = np.iinfo(datatype.numpy)
    low, high = min(values), max(values)
    if low < info.min or high > info.max:
        raise InvalidArgumentError(
            f"{_where(model, tensor)}: value out of range for {datatype.wire_name} "
            f"(got {low if low < info.min else high}, allowed {info.min}..{info.max})"
        )


def to_numpy(model: str, name: str, tensor: Any) -> np.ndarray:
    """An output as a host numpy array; torch tensors (possibly on the GPU) are copied to the host."""
    try:
        return to_host(tensor)
    except (AttributeError, TypeError, RuntimeError) as error:
        raise ModelExecutionError(
            f"model '{model}' output '{name}': cannot convert {type(tensor).__name__} "
            f"to a host array ({error})"
        ) from error


def encode_output(model: str, name: str, array: np.ndarray) -> tuple[str, bytes]:
    """(wire datatype name, raw bytes) of one output array, ready for `raw_output_contents`."""
    wire_name = _OUTPUT_WIRE_NAMES.get(array.dtype)
    if wire_name is None:
        try:
            wire_name = DataType.from_numpy(array.dtype).wire_name
        except KeyError:
            raise ModelExecutionError(
                f"model '{model}' output '{name}': dtype {array.dtype} has no KServe v2 datatype"
            ) from None
        _OUTPUT_WIRE_NAMES[array.dtype] = wire_name
    if wire_name == "BYTES":
        return wire_name, serialize_bytes(array)
    return wire_name, array.tobytes()


def serialize_bytes(array: np.ndarray) -> bytes:
    parts: list[bytes] = []
    for element in array.reshape(-1):
        if isinstance(element, bytes | bytearray | memoryview):
            data = bytes(element)
        else:
            data = str(element).encode("utf-8")
        parts.append(len(data).to_bytes(_LENGTH_PREFIX, "little"))
        parts.append(data)
    return b"".join(parts)
