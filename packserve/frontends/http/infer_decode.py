"""Decode a KServe v2 HTTP infer request into an `InferRequest` once (`infer_encode` writes the
answer).

Runs on the event loop, once per infer request. The decoded request owns numpy views over the
request body; after `Engine.infer` takes it, this module never touches it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from packserve.core.shared_memory import SharedMemoryRegistry, ShmPlace, check_no_overlap
from packserve.core.wording import RESERVED_MESSAGE, RESERVED_PREFIX, triton_request_prefix
from packserve.errors import InvalidArgumentError
from packserve.frontends.http import tensor_data
from packserve.frontends.http.json_checks import checked_parameters, flag, non_negative_int, parse_json
from packserve.frontends.http.limits import HttpLimits
from packserve.frontends.request_fields import RequestFields
from packserve.messages import InferRequest, RequestedOutput
from packserve.types import DataType

# Request-level parameters the front end consumes itself rather than passing on to the engine.
_BINARY_OUTPUT = "binary_data_output"
_PRIORITY = "priority"
_TIMEOUT = "timeout"
_SHARED_MEMORY = frozenset(("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset"))


@dataclass(slots=True)
class DecodedInfer:
    request: InferRequest
    # Output name -> send as binary? None means "every output", with `binary_default` deciding.
    binary_outputs: dict[str, bool]
    binary_default: bool
    # Output name -> where it goes in system shared memory.
    shm_outputs: dict[str, ShmPlace] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _BinaryInput:
    name: str
    datatype: DataType
    dtype: np.dtype[Any] | None  # None for BYTES
    shape: tuple[int, ...]
    count: int
    offset: int  # from the end of the JSON header
    size: int


@dataclass(frozen=True, slots=True)
class _ShmInput:
    name: str
    datatype: DataType
    shape: tuple[int, ...]
    count: int
    place: ShmPlace


@dataclass(frozen=True, slots=True)
class _RequestPlan:
    """What an infer request's JSON header says, already checked. Requests that send the same
    header bytes (the common case: a client sending same-shaped tensors) share one plan; only the
    binary tensors differ between them."""

    binary_inputs: tuple[_BinaryInput, ...]
    json_inputs: dict[str, Any]  # tensors given as JSON `data`: a plan with any is used once
    shm_inputs: tuple[_ShmInput, ...]  # read from shared memory at every decode
    shm_outputs: dict[str, ShmPlace]
    input_order: tuple[str, ...]
    binary_size: int
    binary_outputs: dict[str, bool]
    binary_default: bool
    fields: RequestFields

    def decode(
        self, model: str, version: str, body: bytes, header_end: int, shm: SharedMemoryRegistry | None
    ) -> DecodedInfer:
        tensors: dict[str, Any] = {}
        for entry in self.binary_inputs:
            start = header_end + entry.offset
            if entry.dtype is None:
                chunk = memoryview(body)[start : start + entry.size]
                tensors[entry.name] = tensor_data.bytes_from_binary(
                    entry.name, entry.shape, entry.count, chunk
                )
                continue
            array = np.frombuffer(body, dtype=entry.dtype, count=entry.count, offset=start)
            if entry.datatype is DataType.BOOL:
                tensor_data.check_bool_bytes(entry.name, array)
            tensors[entry.name] = array.reshape(entry.shape)
        if self.shm_inputs:
            if shm is None:
                raise InvalidArgumentError("shared memory is not available on this endpoint")
            for shm_input in self.shm_inputs:
                place = shm_input.place
                raw = shm.read(place.region, place.offset, place.byte_size)
                tensors[shm_input.name] = tensor_data.tensor_from_bytes(
                    shm_input.name, shm_input.datatype, shm_input.shape, shm_input.count, raw
                )
        if self.json_inputs or self.shm_inputs:
            tensors.update(self.json_inputs)
            tensors = {name: tensors[name] for name in self.input_order}
        request = self.fields.request(model, version, tensors)
        return DecodedInfer(request, self.binary_outputs, self.binary_default, self.shm_outputs)


# Headers up to this size have their plans kept (512 of them: at most 2 MiB).
_CACHED_HEADER_BYTES = 4096
_CACHED_PLANS = 512


class InferDecoder:
    """Decodes KServe v2 infer request bodies, reusing the plan of a JSON header it has seen
    before, so a steady stream of same-shaped requests skips parsing and checking the JSON."""

    def __init__(self, limits: HttpLimits, max_plans: int = _CACHED_PLANS) -> None:
        self._limits = limits
        self._max_plans = max_plans
        self._plans: dict[bytes, _RequestPlan] = {}

    def decode(
        self,
        model: str,
        version: str,
        body: bytes,
        header_length: bytes | None,
        shm: SharedMemoryRegistry | None = None,
    ) -> DecodedInfer:
        header_end = len(body) if header_length is None else _header_length(header_length, len(body))
        if header_length is None or header_end > _CACHED_HEADER_BYTES:
            # All JSON (no binary part to reuse a plan for), or a header too big to keep.
            return _plan(model, body, header_end, self._limits).decode(model, version, body, header_end, shm)
        key = body[:header_end]
        plan = self._plans.get(key)
        if plan is None or header_end + plan.binary_size != len(body):
            # Unknown header, or binary data that does not add up: the full path says what is wrong.
            plan = _plan(model, body, header_end, self._limits)
            if not plan.json_inputs:
                if len(self._plans) >= self._max_plans:
                    del self._plans[next(iter(self._plans))]  # the oldest
                self._plans[key] = plan
        return plan.decode(model, version, body, header_end, shm)


def _plan(model: str, body: bytes, json_end: int, limits: HttpLimits) -> _RequestPlan:
    header = parse_json(body, json_end, limits.max_json_depth)
    if not isinstance(header, dict):
        raise InvalidArgumentError("infer request body must be a JSON object")

    parameters = checked_parameters(header.get("parameters"), "request")
    if any(key.startswith(RESERVED_PREFIX) for key in parameters):
        raise InvalidArgumentError(RESERVED_MESSAGE)
    binary_default = flag(parameters.pop(_BINARY_OUTPUT, False), _BINARY_OUTPUT)
    priority = non_negative_int(parameters.pop(_PRIORITY, 0), _PRIORITY)
    timeout_us = non_negative_int(parameters.pop(_TIMEOUT, 0), _TIMEOUT)
    request_id = header.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgumentError("'id' must be a string")

    binary_inputs, json_inputs, shm_inputs, order, binary_size = _decode_inputs(
        header.get("inputs"), len(body) - json_end, limits, f"{triton_request_prefix(request_id)} ", model
    )
    outputs, binary_outputs, shm_outputs = _decode_outputs(header.get("outputs"), binary_default)
    return _RequestPlan(
        binary_inputs=binary_inputs,
        json_inputs=json_inputs,
        shm_inputs=shm_inputs,
        shm_outputs=shm_outputs,
        input_order=order,
        binary_size=binary_size,
        binary_outputs=binary_outputs,
        binary_default=binary_default,
        fields=RequestFields(outputs, request_id, priority, timeout_us, parameters),
    )


def _header_length(raw: bytes, body_length: int) -> int:
    try:
        length = int(raw)
    except ValueError:
        raise InvalidArgumentError(f"invalid Inference-Header-Content-Length {raw!r}") from None
    if length < 0 or length > body_length:
        raise InvalidArgumentError(
            f"Inference-Header-Content-Length {length} is outside the {body_length}-byte body"
        )
    return length


def _decode_inputs(
    raw: Any, binary_available: int, limits: HttpLimits, prefix: str, model: str
) -> tuple[tuple[_BinaryInput, ...], dict[str, Any], tuple[_ShmInput, ...], tuple[str, ...], int]:
    """The inputs of a header: binary ones as where-to-find-them, JSON ones as tensors; their
    names in order; the binary bytes they take, which must be all of the `binary_available`."""
    if not isinstance(raw, list):
        raise InvalidArgumentError("infer request must have an 'inputs' list")
    if len(raw) > limits.max_inputs_per_request:
        raise InvalidArgumentError(
            f"infer request has {len(raw)} inputs, more than the limit of {limits.max_inputs_per_request}"
        )
    binary: list[_BinaryInput] = []
    from_json: dict[str, Any] = {}
    from_shm: list[_ShmInput] = []
    names: list[str] = []
    offset = 0
    for entry in raw:
        if not isinstance(entry, dict):
            raise InvalidArgumentError("each entry of 'inputs' must be a JSON object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError("each input needs a non-empty string 'name'")
        if name in names:
            raise InvalidArgumentError(f"input '{name}' appears more than once")
        names.append(name)
        datatype = _datatype(name, entry.get("datatype"))
        shape, count = tensor_data.element_count(name, entry.get("shape"), limits.max_elements_per_tensor)
        params = checked_parameters(entry.get("parameters"), f"input '{name}'")
        place = _shm_place(params, f"input '{name}'")
        if place is not None:
            if "data" in entry or "binary_data_size" in params:
                raise InvalidArgumentError(f"input '{name}' is in shared memory and also has data")
            tensor_data.check_binary_size(name, datatype, shape, count, place.byte_size, prefix, model)
            from_shm.append(_ShmInput(name, datatype, shape, count, place))
            continue
        size = params.get("binary_data_size")
        if size is not None:
            if "data" in entry:
                raise InvalidArgumentError(f"input '{name}' has both 'data' and 'binary_data_size'")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidArgumentError(f"input '{name}': binary_data_size must be a non-negative integer")
            if offset + size > binary_available:
                raise InvalidArgumentError(
                    f"input '{name}': binary_data_size {size} reaches past the end of the body "
                    f"({binary_available - offset} bytes of binary data remain)"
                )
            tensor_data.check_binary_size(name, datatype, shape, count, size, prefix, model)
            dtype = None if datatype is DataType.BYTES else tensor_data.little_endian(datatype)
            binary.append(_BinaryInput(name, datatype, dtype, shape, count, offset, size))
            offset += size
        elif "data" in entry:
            from_json[name] = tensor_data.tensor_from_json(
                name, datatype, shape, count, entry["data"], limits.max_json_depth
            )
        else:
            raise InvalidArgumentError(f"input '{name}' has neither 'data' nor 'binary_data_size'")
    if offset != binary_available:
        raise InvalidArgumentError(
            f"{binary_available - offset} bytes of binary data follow the inputs' binary_data_size total"
        )
    return tuple(binary), from_json, tuple(from_shm), tuple(names), offset


def _shm_place(params: dict[str, Any], where: str) -> ShmPlace | None:
    """Where a tensor is in shared memory, or None when its parameters name no region."""
    if not params or _SHARED_MEMORY.isdisjoint(params):
        return None
    region = params.get("shared_memory_region")
    if not isinstance(region, str) or not region:
        raise InvalidArgumentError(f"{where}: 'shared_memory_region' must be a non-empty string")
    if "shared_memory_byte_size" not in params:
        raise InvalidArgumentError(
            f"{where}: 'shared_memory_byte_size' is required with 'shared_memory_region'"
        )
    size = non_negative_int(params["shared_memory_byte_size"], "shared_memory_byte_size")
    offset = non_negative_int(params.get("shared_memory_offset", 0), "shared_memory_offset")
    return ShmPlace(region, offset, size)


def _datatype(name: str, raw: Any) -> DataType:
    try:
        return DataType.from_wire(raw)
    except (KeyError, TypeError):
        raise InvalidArgumentError(f"input '{name}': unknown datatype {raw!r}") from None


def _decode_outputs(
    raw: Any, binary_default: bool
) -> tuple[tuple[RequestedOutput, ...] | None, dict[str, bool], dict[str, ShmPlace]]:
    if raw is None:
        return None, {}, {}
    if not isinstance(raw, list):
        raise InvalidArgumentError("'outputs' must be a list")
    outputs: list[RequestedOutput] = []
    binary: dict[str, bool] = {}
    in_shm: dict[str, ShmPlace] = {}
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidArgumentError("each entry of 'outputs' must be an object with a string 'name'")
        name = entry["name"]
        params = checked_parameters(entry.get("parameters"), f"output '{name}'")
        place = _shm_place(params, f"output '{name}'")
        if place is not None:
            in_shm[name] = place
        class_count = non_negative_int(params.get("classification", 0), "classification")
        binary[name] = flag(params.get("binary_data", binary_default), "binary_data")
        outputs.append(RequestedOutput(name=name, class_count=class_count))
    check_no_overlap([(n, p.region, p.offset, p.byte_size) for n, p in in_shm.items()])
    return tuple(outputs), binary, in_shm
