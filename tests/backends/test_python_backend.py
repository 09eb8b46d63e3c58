from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc.model_config_pb2 import ModelConfig

from packserve.backends.base import InstanceContext
from packserve.backends.python import PythonModel, pb_utils
from packserve.config.parse import parse_config_text
from packserve.errors import ConfigError, InvalidArgumentError, ModelExecutionError, ModelLoadError
from packserve.examples.simple_repository import PYTHON_ADD_CONFIG, PYTHON_ADD_MODEL
from tests.fakes.backends import RecordingTimer, model_context, request

CPU = InstanceContext(name="m_0_0", kind="KIND_CPU", device_id=0)


def write_model(tmp_path: Path, name: str, source: str, config: str) -> Path:
    model_dir = tmp_path / name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text(textwrap.dedent(source))
    (model_dir / "config.pbtxt").write_text(textwrap.dedent(config))
    return model_dir


@pytest.fixture
def timer() -> RecordingTimer:
    return RecordingTimer()


@pytest.fixture
def python_add(tmp_path: Path) -> Path:
    return write_model(tmp_path, "python_add", PYTHON_ADD_MODEL, PYTHON_ADD_CONFIG)


def test_pb_utils_is_importable_under_tritons_name(python_add: Path) -> None:
    PythonModel(model_context(python_add))
    import triton_python_backend_utils

    assert triton_python_backend_utils is pb_utils


def test_each_request_gets_its_response_and_errors_stay_per_request(
    python_add: Path, timer: RecordingTimer
) -> None:
    instance = PythonModel(model_context(python_add)).create_instance(CPU)
    good = np.arange(8, dtype=np.float32).reshape(2, 4)
    bad = -np.ones((1, 4), dtype=np.float32)
    results = instance.execute([request("python_add", INPUT0=good), request("python_add", INPUT0=bad)], timer)
    assert timer.calls == ["inputs_ready", "infer_done"]
    assert isinstance(results[0], dict)
    np.testing.assert_array_equal(results[0]["OUTPUT0"], good * 2)
    assert isinstance(results[1], ModelExecutionError)
    assert "negative" in str(results[1])


MODEL_WITH_ARGS = """
    import json
    import numpy as np
    import triton_python_backend_utils as pb_utils

    CREATED = []

    class TritonPythonModel:
        def initialize(self, args):
            self.args = args
            self.config = json.loads(args["model_config"])
            CREATED.append(self)
            self.finalized = False

        def execute(self, requests):
            responses = []
            for request in requests:
                text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
                upper = np.array([item.upper() for item in text.flat], dtype=np.object_).reshape(text.shape)
                info = json.dumps({
                    "id": request.request_id(),
                    "outputs": request.requested_output_names(),
                    "parameters": json.loads(request.parameters()),
                    "instances_in_module": len(CREATED),
                }).encode()
                code = pb_utils.TritonError.INVALID_ARG
                if text.flat[0] == b"invalid":
                    responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("bad text", code)))
                    continue
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("UPPER", upper),
                    pb_utils.Tensor("INFO", np.array([info], dtype=np.object_)),
                ]))
            return responses

        def finalize(self):
            self.finalized = True
"""

TEXT_CONFIG = """
    name: "text"
    backend: "python"
    input [ { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] } ]
    output [
      { name: "UPPER" data_type: TYPE_STRING dims: [ -1 ] },
      { name: "INFO" data_type: TYPE_STRING dims: [ 1 ] }
    ]
"""


def test_initialize_args_bytes_tensors_and_request_fields(tmp_path: Path, timer: RecordingTimer) -> None:
    model_dir = write_model(tmp_path, "text", MODEL_WITH_ARGS, TEXT_CONFIG)
    model = PythonModel(model_context(model_dir))
    instance = model.create_instance(InstanceContext(name="text_0_0", kind="KIND_CPU", device_id=0))
    user_model = instance.triton_model  # type: ignore[attr-defined]
    args = user_model.args
    assert args["model_name"] == "text"
    assert args["model_version"] == "1"
    assert args["model_instance_kind"] == "CPU"
    assert args["model_instance_name"] == "text_0_0"
    assert args["model_instance_device_id"] == "0"
    assert args["model_repository"] == str(model_dir)
    assert user_model.config["input"][0]["data_type"] == "TYPE_STRING"
    assert user_model.config["input"][0]["dims"] == [-1]  # numbers, not protobuf's int64 strings

    text = np.array([b"abc", b"de"], dtype=np.object_)
    asked = request("text", ["UPPER"], TEXT=text)
    asked.id = "req-7"
    asked.parameters = {"mode": "fast"}
    (result,) = instance.execute([asked], timer)
    assert isinstance(result, dict)
    assert list(result) == ["UPPER"]
    assert result["UPPER"].tolist() == [b"ABC", b"DE"]

    (everything,) = instance.execute([request("text", TEXT=text)], timer)
    assert isinstance(everything, dict)
    info = json.loads(everything["INFO"][0])
    assert info["outputs"] == ["UPPER", "INFO"]
    assert info["instances_in_module"] == 1

    (invalid,) = instance.execute([request("text", TEXT=np.array([b"invalid"], dtype=np.object_))], timer)
    assert isinstance(invalid, InvalidArgumentError) and str(invalid) == "bad text"

    instance.close()
    assert user_model.finalized


def test_every_instance_has_its_own_module_and_model(tmp_path: Path, timer: RecordingTimer) -> None:
    model_dir = write_model(tmp_path, "text", MODEL_WITH_ARGS, TEXT_CONFIG)
    model = PythonModel(model_context(model_dir))
    first = model.create_instance(InstanceContext(name="text_0_0", kind="KIND_CPU", device_id=0))
    second = model.create_instance(InstanceContext(name="text_0_1", kind="KIND_CPU", device_id=0))
    assert first.triton_model is not second.triton_model  # type: ignore[attr-defined]
    (result,) = second.execute([request("text", TEXT=np.array([b"x"], dtype=np.object_))], timer)
    assert isinstance(result, dict)
    assert json.loads(result["INFO"][0])["instances_in_module"] == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return []", "expected 2, got 0 responses"),
        ("return None", "must return one response per request"),
        ("raise RuntimeError('boom')", "execute\\(\\) raised RuntimeError: boom"),
    ],
)
def test_broken_execute_fails_the_batch(
    tmp_path: Path, timer: RecordingTimer, body: str, message: str
) -> None:
    source = f"""
        class TritonPythonModel:
            def execute(self, requests):
                {body}
    """
    model_dir = write_model(tmp_path, "broken", source, PYTHON_ADD_CONFIG.replace("python_add", "broken"))
    instance = PythonModel(model_context(model_dir)).create_instance(CPU)
    x = np.ones((1, 4), np.float32)
    with pytest.raises(ModelExecutionError, match=message):
        instance.execute([request("broken", INPUT0=x), request("broken", INPUT0=x)], timer)


def test_missing_requested_output_fails_that_request(tmp_path: Path, timer: RecordingTimer) -> None:
    source = """
        import triton_python_backend_utils as pb_utils
        class TritonPythonModel:
            def execute(self, requests):
                return [pb_utils.InferenceResponse(output_tensors=[]) for _ in requests]
    """
    model_dir = write_model(tmp_path, "empty", source, PYTHON_ADD_CONFIG.replace("python_add", "empty"))
    instance = PythonModel(model_context(model_dir)).create_instance(CPU)
    (result,) = instance.execute([request("empty", INPUT0=np.ones((1, 4), np.float32))], timer)
    assert isinstance(result, ModelExecutionError) and "no output 'OUTPUT0'" in str(result)


def test_initialize_failure_is_a_load_error(tmp_path: Path) -> None:
    source = """
        class TritonPythonModel:
            def initialize(self, args):
                raise ValueError("weights missing")
    """
    model_dir = write_model(tmp_path, "failing", source, PYTHON_ADD_CONFIG.replace("python_add", "failing"))
    model = PythonModel(model_context(model_dir))
    with pytest.raises(
        ModelLoadError, match="initialize\\(\\) of instance 'm_0_0' failed: ValueError: weights missing"
    ):
        model.create_instance(CPU)


def test_import_failure_is_a_load_error(tmp_path: Path) -> None:
    model_dir = tmp_path / "syntax" / "1"
    model_dir.mkdir(parents=True)
    (model_dir / "model.py").write_text("def broken(:\n")
    with pytest.raises(ModelLoadError, match=r"importing .* failed: SyntaxError"):
        PythonModel.complete_config(ModelConfig(name="syntax", backend="python"), model_dir)


AUTO_COMPLETE_MODEL = """
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        @staticmethod
        def auto_complete_config(auto_complete_model_config):
            auto_complete_model_config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [3]})
            auto_complete_model_config.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": [3]})
            auto_complete_model_config.set_max_batch_size(16)
            auto_complete_model_config.set_dynamic_batching()
            return auto_complete_model_config

        def execute(self, requests):
            responses = []
            for request in requests:
                values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", values + 1)]))
            return responses
"""


def test_auto_complete_config_hook_fills_the_config(tmp_path: Path) -> None:
    version_dir = tmp_path / "auto" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "model.py").write_text(textwrap.dedent(AUTO_COMPLETE_MODEL))
    config = ModelConfig(name="auto", backend="python")
    PythonModel.complete_config(config, version_dir)
    assert config.max_batch_size == 16
    assert config.HasField("dynamic_batching")
    assert [(t.name, list(t.dims)) for t in config.input] == [("IN", [3])]
    assert [t.name for t in config.output] == ["OUT"]


def test_auto_complete_conflict_is_a_config_error(tmp_path: Path) -> None:
    version_dir = tmp_path / "auto" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "model.py").write_text(textwrap.dedent(AUTO_COMPLETE_MODEL))
    config = parse_config_text(
        'name: "auto"\nbackend: "python"\ninput [ { name: "IN" data_type: TYPE_INT32 dims: [3] } ]'
    )
    with pytest.raises(ConfigError, match="configuration expects datatype TYPE_INT32 for input 'IN'"):
        PythonModel.complete_config(config, version_dir)


def test_user_modules_are_dropped_after_close(python_add: Path) -> None:
    def loaded() -> set[str]:
        return {name for name in sys.modules if name.startswith("packserve_python_model_python_add")}

    existing = loaded()
    instance = PythonModel(model_context(python_add)).create_instance(CPU)
    assert loaded() - existing
    instance.close()
    assert not loaded() - existing
