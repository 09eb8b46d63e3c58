"""Tensor payloads of the KServe v2 HTTP protocol -> numpy, and numpy -> payloads.

Two forms: JSON `data` (flat or nested lists) and the binary tensor data extension (raw
little-endian bytes; BYTES elements as a 4-byte little-endian length then the bytes).
Binary inputs become numpy views over the request body, not copies (infer_decode makes them); the
front end hands them to the engine and never touches them again.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from packserve.errors import InvalidArgumentError, ResourceExhaustedError
from packserve.types import DataType

_LENGTH_PREFIX = struct.Struct("<I")
# DataType's properties go through Enum machinery on every access; the hot path reads these instead.
_LITTLE_ENDIAN: dict[DataType, np.dtype[Any]] = {
    t: t.numpy.newbyteorder("<") for t in DataType if t is not DataType.BYTES
}
_BYTE_SIZE = {t: t.byte_size for t in DataType}
WIRE_NAME = {t: t.wire_name for t in DataType}
_INTEGER_KINDS = ("i", "u")


def element_count(input_name: str, shape: Any, max_elements: int) -> tuple[tuple[int, ...], int]:
    """Validate a wire shape (non-negative integers) and return it with its element count,
    refusing counts past `max_elements` before anything is allocated."""
    if not isinstance(shape, list):
        raise InvalidArgumentError(f"input '{input_name}': 'shape' must be a list of integers")
    count = 1
    for dim in shape:
        # bool is an int subclass; a shape of [true] is a client bug, not a 1.
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            raise InvalidArgumentError(f"input '{input_name}': shape {shape} must hold non-negative integers")
        count *= dim
    if count > max_elements:
        raise ResourceExhaustedError(
            f"input '{input_name}': shape {shape} has {count} elements, more than the limit of {max_elements}"
        )
    return tuple(shape), count


# ---------------------------------------------------------------------------------------- JSON in


def _nesting_depth(data: list[Any]) -> int:
    """Depth along the first elements: enough to refuse absurd nesting before numpy walks it."""
    depth = 0
    node: Any = data
    while isinstance(node, list):
        depth += 1
        node = node[0] if node else None
    return depth


def tensor_from_json(
    input_name: str, datatype: DataType, shape: tuple[int, ...], count: int, data: Any, max_depth: int
) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]  # a scalar stands for a one-element tensor
    if _nesting_depth(data) > max_depth:
        raise InvalidArgumentError(f"input '{input_name}': 'data' is nested deeper than {max_depth}")
    if datatype is DataType.BYTES:
        return _bytes_from_json(input_name, shape, count, data)
    try:
        parsed = np.array(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgumentError(
            f"input '{input_name}': 'data' is not a regular array of numbers: {exc}"
        ) from None
    if parsed.size != count:
        raise InvalidArgumentError(
            f"input '{input_name}': shape {list(shape)} expects {count} elements, 'data' holds {parsed.size}"
        )
    return _cast_checked(input_name, datatype, parsed, data).reshape(shape)


def _cast_checked(input_name: str, datatype: DataType, parsed: np.ndarray, data: list[Any]) -> np.ndarray:
    """numpy silently wraps out-of-range integers and turns big floats into inf: refuse both."""
    kind = parsed.dtype.kind
    target = datatype.numpy
    if datatype is DataType.BOOL:
        if kind != "b" and parsed.size:
            raise InvalidArgumentError(f"input '{input_name}': BOOL 'data' must hold true/false")
        return parsed.astype(np.bool_, copy=False)
    if target.kind in _INTEGER_KINDS:
        if not parsed.size:
            return parsed.astype(target)
        if kind in _INTEGER_KINDS:
            low, high = int(parsed.min()), int(parsed.max())
        else:
            # numpy turns integers past int64 into float64 or object: look at the Python values.
            parsed = np.array(data, dtype=np.object_)
            low, high = _integer_bounds(input_name, datatype, parsed)
        info = np.iinfo(target)
        if low < info.min or high > info.max:
            raise InvalidArgumentError(
                f"input '{input_name}': value {low if low < info.min else high} is out of range for "
                f"{datatype.wire_name} [{info.min}, {info.max}]"
            )
        if kind in _INTEGER_KINDS:
            return parsed.astype(target, copy=False)
        return np.array(parsed.reshape(-1).tolist(), dtype=target)
    # Floating point targets take integers and floats, not booleans or strings.
    if parsed.size and kind not in ("i", "u", "f"):
        raise InvalidArgumentError(f"input '{input_name}': {datatype.wire_name} 'data' must hold numbers")
    with np.errstate(over="ignore"):
        cast = parsed.astype(target, copy=False)
    if parsed.size and kind == "f" and target.itemsize < parsed.dtype.itemsize:
        overflowed = np.isinf(cast) & np.isfinite(parsed)
        if overflowed.any():
            bad = parsed[overflowed].flat[0]
            raise InvalidArgumentError(
                f"input '{input_name}': value {bad} is out of range for {datatype.wire_name}"
            )
    return cast


def _integer_bounds(input_name: str, datatype: DataType, parsed: np.ndarray) -> tuple[int, int]:
    values = parsed.reshape(-1).tolist()
    if not all(type(v) is int for v in values):
        raise InvalidArgumentError(f"input '{input_name}': {datatype.wire_name} 'data' must hold integers")
    return min(values), max(values)


def _bytes_from_json(input_name: str, shape: tuple[int, ...], count: int, data: list[Any]) -> np.ndarray:
    flat: list[bytes] = []
    stack: list[Any] = [iter(data)]
    while stack:  # iterative flatten: no recursion, whatever the nesting
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if isinstance(item, str):
                flat.append(item.encode("utf-8"))
            else:
                raise InvalidArgumentError(
                    f"input '{input_name}': BYTES 'data' must hold strings, got {type(item).__name__}"
                )
            if len(flat) > count:
                break
        else:
            stack.pop()
            continue
        if len(flat) > count:
            break
    if len(flat) != count:
        raise InvalidArgumentError(
            f"input '{input_name}': shape {list(shape)} expects {count} elements, 'data' holds "
            f"{'more' if len(flat) > count else len(flat)}"
        )
    array = np.empty(count, dtype=np.object_)
    array[:] = flat
    return array.reshape(shape)


# -------------------------------------------------------------------------------------- binary in


def little_endian(datatype: DataType) -> np.dtype[Any]:
    """The numpy dtype of a fixed-size datatype's wire bytes."""
    return _LITTLE_ENDIAN[datatype]


def check_binary_size(
    input_name: str,
    datatype: DataType,
    shape: tuple[int, ...],
    count: int,
    size: int,
    prefix: str = "",
    model: str = "",
) -> None:
    """A fixed-size tensor's binary_data_size must be exactly what its shape needs (BYTES
    elements carry their own lengths and are checked as they are read). Triton's wording first
    (clients match on it), then what the shape needs."""
    if datatype is DataType.BYTES:
        return
    expected = count * _BYTE_SIZE[datatype]
    if size != expected:
        raise InvalidArgumentError(
            f"{prefix}input byte size mismatch for input '{input_name}' for model '{model}'. "
            f"Expected {expected}, got {size} ({datatype.wire_name} shape {list(shape)})"
        )


def check_bool_bytes(input_name: str, array: np.ndarray) -> None:
    if array.size and array.view(np.uint8).max() > 1:
        raise InvalidArgumentError(f"input '{input_name}': BOOL bytes must be 0 or 1")


def bytes_from_binary(input_name: str, shape: tuple[int, ...], count: int, chunk: memoryview) -> np.ndarray:
    # Every element needs its 4-byte length: refuse a lying shape before looping over it.
    if count * _LENGTH_PREFIX.size > len(chunk):
        raise InvalidArgumentError(
            f"input '{input_name}': {len(chunk)} bytes cannot hold {count} BYTES elements"
        )
    array = np.empty(count, dtype=np.object_)
    offset = 0
    end = len(chunk)
    for index in range(count):
        if offset + 4 > end:
            raise InvalidArgumentError(
                f"input '{input_name}': BYTES element {index} is cut off after {offset} bytes"
            )
        (length,) = _LENGTH_PREFIX.unpack_from(chunk, offset)
        offset += 4
        if offset + length > end:
            raise InvalidArgumentError(
                f"input '{input_name}': BYTES element {index} claims {length} bytes, only "
                f"{end - offset} remain"
            )
        array[index] = bytes(chunk[offset : offset + length])
        offset += length
    if offset != end:
        raise InvalidArgumentError(
            f"input '{input_name}': {end - offset} bytes left over after {count} BYTES elements"
        )
    return array.reshape(shape)


# ------------------------------------------------------------------------------------------- out


def bytes_elements(array: np.ndarray) -> list[bytes]:
    """The elements of a BYTES output as bytes (object arrays may hold str; 'S' arrays bytes)."""
    out: list[bytes] = []
    for item in array.reshape(-1).tolist():
        if isinstance(item, bytes):
            out.append(item)
        elif isinstance(item, str):
            out.append(item.encode("utf-8"))
        else:
            out.append(str(item).encode("utf-8"))
    return out


def serialize_bytes(elements: list[bytes]) -> bytes:
    parts: list[bytes] = []
    for element in elements:
        parts.append(_LENGTH_PREFIX.pack(len(element)))
        parts.append(element)
    return b"".join(parts)


def json_bytes_data(elements: list[bytes]) -> list[str] | None:
    """BYTES elements as JSON strings, or None when one is not UTF-8 (then it must go binary)."""
    try:
        return [element.decode("utf-8") for element in elements]
    except UnicodeDecodeError:
        return None


def tensor_from_bytes(
    input_name: str, datatype: DataType, shape: tuple[int, ...], count: int, raw: bytes
) -> np.ndarray:
    """A tensor from its wire bytes (shared memory, whose size was checked against the shape)."""
    if datatype is DataType.BYTES:
        return bytes_from_binary(input_name, shape, count, memoryview(raw))
    array = np.frombuffer(raw, dtype=little_endian(datatype), count=count)
    if datatype is DataType.BOOL:
        check_bool_bytes(input_name, array)
    return array.reshape(shape)


def tensor_bytes(array: np.ndarray) -> Any:
    """An output's wire bytes: BYTES elements length-prefixed, anything else its raw buffer."""
    if array.dtype == np.object_ or array.dtype.kind in ("S", "U"):
        return serialize_bytes(bytes_elements(array))
    return np.ascontiguousarray(array).data.cast("B")
