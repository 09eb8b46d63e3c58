"""ModelInferRequest -> InferRequest and InferResponse -> ModelInferResponse.

Decoding happens once, here; the core never sees protobuf. The decoded request owns numpy views of
the incoming message's bytes, so the message must outlive the request (it does: the servicer holds
it until the response is encoded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tritonclient.grpc import service_pb2

from packserve.core.shared_memory import SharedMemoryRegistry, ShmPlace, check_no_overlap
from packserve.core.wording import RESERVED_MESSAGE, RESERVED_PREFIX, triton_request_prefix
from packserve.errors import InvalidArgumentError
from packserve.frontends.grpc import tensors
from packserve.messages import InferRequest, InferResponse, RequestedOutput

# Triton's request parameters that map onto InferRequest fields instead of staying parameters.
_PRIORITY = "priority"
_TIMEOUT_US = "timeout"
_CLASSIFICATION = "classification"
_SHARED_MEMORY = "shared_memory_region"
_ENABLE_EMPTY_FINAL = "triton_enable_empty_final_response"


def parameter_value(parameter: service_pb2.InferParameter) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return None if choice is None else getattr(parameter, choice)


def read_parameters(parameters: Mapping[str, service_pb2.InferParameter]) -> dict[str, Any]:
    return {key: parameter_value(value) for key, value in parameters.items()}


def write_parameters(target: Any, values: Mapping[str, Any]) -> None:
    """Fill a protobuf `map<string, InferParameter>` from plain Python values."""
    for key, value in values.items():
        parameter = target[key]
        if isinstance(value, bool):
            parameter.bool_param = value
        elif isinstance(value, int):
            parameter.int64_param = value
        elif isinstance(value, float):
            parameter.double_param = value
        else:
            parameter.string_param = str(value)


def decode_infer_request(
    message: service_pb2.ModelInferRequest, shm: SharedMemoryRegistry | None = None
) -> InferRequest:
    model = message.model_name
    raw_contents = message.raw_input_contents
    # raw_input_contents holds one entry per input that is not in shared memory, in order.
    in_memory = sum(1 for tensor in message.inputs if _SHARED_MEMORY not in tensor.parameters)
    if raw_contents and len(raw_contents) != in_memory:
        raise InvalidArgumentError(
            f"model '{model}': {len(raw_contents)} raw_input_contents for {in_memory} inputs"
        )
    inputs: dict[str, Any] = {}
    index = -1
    for tensor in message.inputs:
        name = tensor.name
        if name in inputs:
            raise InvalidArgumentError(f"model '{model}' input '{name}': given more than once")
        datatype = tensors.parse_datatype(model, name, tensor.datatype)
        shape = tuple(tensor.shape)
        count = tensors.element_count(model, name, shape)
        place = _shm_place(model, f"input '{name}'", tensor.parameters)
        if place is not None:
            inputs[name] = _read_shm(model, message.id, name, datatype, shape, count, place, shm)
            continue
        index += 1
        has_typed = tensor.HasField("contents")
        if raw_contents:
            if has_typed:
                raise InvalidArgumentError(
                    f"model '{model}' input '{name}': both typed contents and raw_input_contents given"
                )
            raw = raw_contents[index]
            inputs[name] = tensors.decode_raw(model, name, datatype, shape, count, raw, message.id)
        elif has_typed or count == 0:
            inputs[name] = tensors.decode_typed(model, name, datatype, shape, count, tensor.contents)
        else:
            raise InvalidArgumentError(f"model '{model}' input '{name}': no data (neither contents nor raw)")

    parameters = read_parameters(message.parameters)
    # The streaming servicer reads this flag of Triton's own clients; any other triton_ key is refused.
    parameters.pop(_ENABLE_EMPTY_FINAL, None)
    if any(key.startswith(RESERVED_PREFIX) for key in parameters):
        raise InvalidArgumentError(RESERVED_MESSAGE)
    priority = parameters.pop(_PRIORITY, 0)
    timeout_us = parameters.pop(_TIMEOUT_US, 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or priority < 0:
        raise InvalidArgumentError(f"model '{model}': parameter 'priority' must be a non-negative integer")
    if not isinstance(timeout_us, int) or isinstance(timeout_us, bool) or timeout_us < 0:
        raise InvalidArgumentError(
            f"model '{model}': parameter 'timeout' must be a non-negative integer (microseconds)"
        )
    return InferRequest(
        model_name=model,
        model_version=message.model_version,
        inputs=inputs,
        outputs=_requested_outputs(model, message.outputs) if message.outputs else None,
        id=message.id,
        priority=priority,
        timeout_us=timeout_us,
        parameters=parameters,
    )


def _shm_place(model: str, where: str, parameters: Mapping[str, Any]) -> ShmPlace | None:
    if _SHARED_MEMORY not in parameters:
        return None
    values = read_parameters(parameters)
    region = values.get(_SHARED_MEMORY)
    size = values.get("shared_memory_byte_size")
    offset = values.get("shared_memory_offset", 0)
    if not isinstance(region, str) or not region:
        raise InvalidArgumentError(f"model '{model}' {where}: 'shared_memory_region' must be a string")
    for key, value in (("shared_memory_byte_size", size), ("shared_memory_offset", offset)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidArgumentError(f"model '{model}' {where}: '{key}' must be a non-negative integer")
    assert isinstance(size, int) and isinstance(offset, int)
    return ShmPlace(region, offset, size)


def _read_shm(
    model: str,
    request_id: str,
    name: str,
    datatype: tensors.WireType,
    shape: tuple[int, ...],
    count: int,
    place: ShmPlace,
    shm: SharedMemoryRegistry | None,
) -> Any:
    if shm is None:
        raise InvalidArgumentError(f"model '{model}' input '{name}': shared memory is not available")
    if not datatype.is_bytes and place.byte_size != count * datatype.byte_size:
        raise InvalidArgumentError(
            f"{triton_request_prefix(request_id)} input byte size mismatch for input '{name}' for model "
            f"'{model}'. Expected {count * datatype.byte_size}, got {place.byte_size}"
        )
    raw = shm.read(place.region, place.offset, place.byte_size)
    return tensors.decode_raw(model, name, datatype, shape, count, raw)


def shm_outputs(message: service_pb2.ModelInferRequest) -> dict[str, ShmPlace]:
    """The outputs a request wants written into shared memory, checked not to overlap."""
    places: dict[str, ShmPlace] = {}
    for output in message.outputs:
        place = _shm_place(message.model_name, f"output '{output.name}'", output.parameters)
        if place is not None:
            places[output.name] = place
    check_no_overlap([(n, p.region, p.offset, p.byte_size) for n, p in places.items()])
    return places


def _requested_outputs(model: str, outputs: Any) -> list[RequestedOutput]:
    requested: list[RequestedOutput] = []
    for output in outputs:
        class_count = 0
        if _CLASSIFICATION in output.parameters:
            value = parameter_value(output.parameters[_CLASSIFICATION])
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentError(
                    f"model '{model}' output '{output.name}': 'classification' must be a non-negative integer"
                )
            class_count = value
        requested.append(RequestedOutput(name=output.name, class_count=class_count))
    return requested


def encode_infer_response(
    response: InferResponse,
    in_shm: Mapping[str, ShmPlace] | None = None,
    shm: SharedMemoryRegistry | None = None,
) -> service_pb2.ModelInferResponse:
    message = service_pb2.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    raw_contents = message.raw_output_contents
    for name, tensor in response.outputs.items():
        array = tensors.to_numpy(response.model_name, name, tensor)
        datatype, raw = tensors.encode_output(response.model_name, name, array)
        message.outputs.add(name=name, datatype=datatype, shape=array.shape)
        place = in_shm.get(name) if in_shm else None
        if place is not None and shm is not None:
            # As Triton: written to the region, with an empty raw entry keeping the indexes aligned.
            shm.write(place.region, place.offset, place.byte_size, raw, f"output '{name}'")
            raw = b""
        raw_contents.append(raw)
    if response.parameters:
        write_parameters(message.parameters, response.parameters)
    return message
