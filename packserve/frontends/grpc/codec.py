"""ModelInferRequest -> InferRequest and InferResponse -> ModelInferResponse.

Decoding happens once, here; the core never sees protobuf. The decoded request owns numpy views of
the incoming message's bytes, so the message must outlive the request (it does: the servicer holds
it until the response is encoded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tritonclient.grpc import service_pb2

from packserve.core.wording import RESERVED_MESSAGE, RESERVED_PREFIX
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


def decode_infer_request(message: service_pb2.ModelInferRequest) -> InferRequest:
    model = message.model_name
    raw_contents = message.raw_input_contents
    if raw_contents and len(raw_contents) != len(message.inputs):
        raise InvalidArgumentError(
            f"model '{model}': {len(raw_contents)} raw_input_contents for {len(message.inputs)} inputs"
        )
    inputs: dict[str, Any] = {}
    for index, tensor in enumerate(message.inputs):
        name = tensor.name
        if name in inputs:
            raise InvalidArgumentError(f"model '{model}' input '{name}': given more than once")
        if _SHARED_MEMORY in tensor.parameters:
            raise InvalidArgumentError(f"model '{model}' input '{name}': shared memory is not supported")
        datatype = tensors.parse_datatype(model, name, tensor.datatype)
        shape = tuple(tensor.shape)
        count = tensors.element_count(model, name, shape)
        has_typed = tensor.HasField("contents")
        if raw_contents:
            if has_typed:
                raise InvalidArgumentError(
                    f"model '{model}' input '{name}': both typed contents and raw_input_contents given"
                )
            inputs[name] = tensors.decode_raw(model, name, datatype, shape, count, raw_contents[index])
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


def _requested_outputs(model: str, outputs: Any) -> list[RequestedOutput]:
    requested: list[RequestedOutput] = []
    for output in outputs:
        if _SHARED_MEMORY in output.parameters:
            raise InvalidArgumentError(
                f"model '{model}' output '{output.name}': shared memory is not supported"
            )
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


def encode_infer_response(response: InferResponse) -> service_pb2.ModelInferResponse:
    message = service_pb2.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    raw_contents = message.raw_output_contents
    for name, tensor in response.outputs.items():
        array = tensors.to_numpy(response.model_name, name, tensor)
        datatype, raw = tensors.encode_output(response.model_name, name, array)
        message.outputs.add(name=name, datatype=datatype, shape=array.shape)
        raw_contents.append(raw)
    if response.parameters:
        write_parameters(message.parameters, response.parameters)
    return message
