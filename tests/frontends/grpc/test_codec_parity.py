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


def test_raw_byte_size_mismatch_has_tritons_wording_first() -> None:
    message = service_pb2.ModelInferRequest(model_name="m", id="r1")
    message.inputs.add(name="X", datatype="FP32", shape=[16])
    message.raw_input_contents.append(b"\x00" * 60)
    with pytest.raises(InvalidArgumentError) as caught:
        decode_infer_request(message)
    assert str(caught.value).startswith(
        "[request id: r1] input byte size mismatch for input 'X' for model 'm'. Expected 64, got 60"
    )
