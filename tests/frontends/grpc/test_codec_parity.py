"""gRPC decode: reserved triton_ parameters refused (Triton's own streaming flag aside)."""

from __future__ import annotations

import pytest
from tritonclient.grpc import service_pb2

from packserve.errors import InvalidArgumentError
from packserve.frontends.grpc.codec import decode_infer_request


def _request(parameter: str) -> service_pb2.ModelInferRequest:
    message = service_pb2.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="X", datatype="INT32", shape=[1])
    tensor.contents.int_contents.append(1)
    message.parameters[parameter].bool_param = True
    return message


def test_reserved_parameter_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="reserved for Triton usage"):
        decode_infer_request(_request("triton_anything"))


def test_streaming_final_response_flag_is_allowed_and_consumed() -> None:
    request = decode_infer_request(_request("triton_enable_empty_final_response"))
    assert "triton_enable_empty_final_response" not in request.parameters
