from __future__ import annotations

import json

import numpy as np
import pytest

from packserve.backends.python import pb_utils


def test_tensor_dlpack_round_trip_shares_host_memory() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    tensor = pb_utils.Tensor("x", array)
    assert tensor.is_cpu() and tensor.name() == "x" and tensor.shape() == [2, 3]
    back = pb_utils.Tensor.from_dlpack("y", tensor.as_numpy())
    assert np.shares_memory(back.as_numpy(), array)
    assert tensor.triton_dtype() == 11


def test_tensor_from_torch_via_dlpack() -> None:
    torch = pytest.importorskip("torch")
    source = torch.arange(4, dtype=torch.int32)
    tensor = pb_utils.Tensor.from_dlpack("t", torch.utils.dlpack.to_dlpack(source))
    np.testing.assert_array_equal(tensor.as_numpy(), [0, 1, 2, 3])
    assert torch.equal(torch.from_dlpack(tensor.to_dlpack()), source)


def test_unicode_arrays_are_refused_like_triton() -> None:
    with pytest.raises(pb_utils.TritonModelException, match=r"np\.object_"):
        pb_utils.Tensor("s", np.array(["a"]))


def test_type_helpers_match_triton() -> None:
    assert pb_utils.triton_string_to_numpy("TYPE_FP16") is np.float16
    assert pb_utils.triton_string_to_numpy("TYPE_STRING") is np.object_
    assert pb_utils.numpy_to_triton_type(np.int64) == 9
    assert pb_utils.numpy_to_triton_type(np.object_) == 13
    assert pb_utils.triton_to_numpy_type(8) is np.int32


def test_bytes_serialization_round_trip() -> None:
    values = np.array([b"a", b"", "caf\u00e9"], dtype=np.object_)
    encoded = pb_utils.serialize_byte_tensor(values)
    assert encoded is not None
    assert pb_utils.deserialize_bytes_tensor(encoded).tolist() == [b"a", b"", "caf\u00e9".encode()]


def test_bls_request_construction_and_refusal_outside_execute() -> None:
    request = pb_utils.InferenceRequest(
        model_name="other",
        requested_output_names=["OUT"],
        inputs=[pb_utils.Tensor("IN", np.zeros(1, np.float32))],
        parameters={"k": 1},
    )
    assert request.model_name() == "other"
    assert json.loads(request.parameters()) == {"k": 1}
    assert pb_utils.get_input_tensor_by_name(request, "IN") is not None
    # BLS works from within a served model's execute() (tests/backends/test_bls.py), not from here.
    with pytest.raises(pb_utils.TritonModelException, match="within execute"):
        request.exec()


def test_config_helpers_read_the_json_config() -> None:
    config = {"input": [{"name": "IN", "data_type": "TYPE_FP32"}], "output": [{"name": "OUT"}]}
    assert pb_utils.get_input_config_by_name(config, "IN") == {"name": "IN", "data_type": "TYPE_FP32"}
    assert pb_utils.get_output_config_by_name(config, "NOPE") is None
    response = pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.ones(1))])
    assert pb_utils.get_output_tensor_by_name(response, "OUT") is not None
    assert not response.has_error()


def test_model_config_rejects_bad_max_batch_size_and_properties() -> None:
    config = pb_utils.ModelConfig(json.dumps({"name": "m", "max_batch_size": 8, "input": [], "output": []}))
    with pytest.raises(ValueError, match="configuration specified max_batch_size 8"):
        config.set_max_batch_size(4)
    with pytest.raises(ValueError, match="contains property other than"):
        config.add_input({"name": "x", "data_type": "TYPE_FP32", "dims": [1], "format": "NHWC"})
    with pytest.raises(ValueError, match="is missing 'dims' property"):
        config.add_output({"name": "y", "data_type": "TYPE_FP32"})


def test_logger_writes_to_python_logging(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("DEBUG", logger="packserve.python_model"):
        pb_utils.Logger.log_info("hello")
        pb_utils.Logger.log_verbose("detail")
        pb_utils.Logger.log("warned", pb_utils.Logger.WARNING)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "hello"),
        ("DEBUG", "detail"),
        ("WARNING", "warned"),
    ]
