from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from packserve.backends.base import InstanceContext
from packserve.backends.pytorch import TorchModel, tensor_positions
from packserve.errors import ConfigError, ModelExecutionError
from packserve.model_spec import TensorSpec
from packserve.types import DataType
from tests.fakes.backends import RecordingTimer, model_context, request

torch = pytest.importorskip("torch")
from tests.backends.torch_models import AddSub, ScaleByName  # noqa: E402 - needs torch

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
CPU = InstanceContext(name="m_0_0", kind="KIND_CPU", device_id=0)

ADD_SUB_CONFIG = """
name: "addsub"
platform: "pytorch_libtorch"
max_batch_size: 8
input [
  { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT__1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT__1" data_type: TYPE_FP32 dims: [ 4 ] }
]
instance_group [ { count: 2, kind: KIND_CPU } ]
"""


@pytest.fixture
def addsub_dir(tmp_path: Path) -> Path:
    model_dir = tmp_path / "addsub"
    (model_dir / "1").mkdir(parents=True)
    torch.jit.script(AddSub()).save(str(model_dir / "1" / "model.pt"))
    (model_dir / "config.pbtxt").write_text(ADD_SUB_CONFIG)
    return model_dir


def test_torchscript_batch_split_per_request(addsub_dir: Path) -> None:
    timer = RecordingTimer()
    model = TorchModel(model_context(addsub_dir))
    instance = model.create_instance(CPU)
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((1, 4), dtype=np.float32)
    # Input order comes from the __<index> suffix, not from dict order.
    first, second = instance.execute(
        [
            request("addsub", INPUT__1=b.repeat(2, 0), INPUT__0=a),
            request("addsub", ["OUTPUT__1"], INPUT__0=b, INPUT__1=b * 3),
        ],
        timer,
    )
    assert timer.calls == ["inputs_ready", "infer_done"]
    assert isinstance(first, dict) and isinstance(second, dict)
    np.testing.assert_array_equal(first["OUTPUT__0"], a + 1)
    np.testing.assert_array_equal(first["OUTPUT__1"], a - 1)
    assert list(second) == ["OUTPUT__1"]
    np.testing.assert_array_equal(second["OUTPUT__1"], b - b * 3)
    assert isinstance(first["OUTPUT__0"], np.ndarray)


def test_instances_on_one_device_share_the_module(addsub_dir: Path) -> None:
    model = TorchModel(model_context(addsub_dir))
    first = model.create_instance(CPU)
    second = model.create_instance(InstanceContext(name="addsub_0_1", kind="KIND_CPU", device_id=0))
    assert first._module is second._module  # type: ignore[attr-defined]


def test_torch_tensor_inputs_are_accepted(addsub_dir: Path) -> None:
    instance = TorchModel(model_context(addsub_dir)).create_instance(CPU)
    x = torch.ones(1, 4)
    (result,) = instance.execute([request("addsub", INPUT__0=x, INPUT__1=x)], RecordingTimer())
    assert isinstance(result, dict)
    np.testing.assert_array_equal(result["OUTPUT__0"], np.full((1, 4), 2, np.float32))


def test_read_only_numpy_inputs_work(addsub_dir: Path) -> None:
    instance = TorchModel(model_context(addsub_dir)).create_instance(CPU)
    x = np.frombuffer(np.ones(4, np.float32).tobytes(), dtype=np.float32).reshape(1, 4)
    (result,) = instance.execute([request("addsub", INPUT__0=x, INPUT__1=x)], RecordingTimer())
    assert isinstance(result, dict)
    np.testing.assert_array_equal(result["OUTPUT__1"], np.zeros((1, 4), np.float32))


def test_runtime_failure_becomes_model_execution_error(addsub_dir: Path) -> None:
    instance = TorchModel(model_context(addsub_dir)).create_instance(CPU)
    with pytest.raises(ModelExecutionError, match="model 'addsub': torch failed"):
        instance.execute(
            [request("addsub", INPUT__0=np.ones((1, 4), np.float32), INPUT__1=np.ones((1, 3), np.float32))],
            RecordingTimer(),
        )


def test_torch_export_program_with_named_dict_outputs(tmp_path: Path) -> None:
    model_dir = tmp_path / "scale"
    (model_dir / "1").mkdir(parents=True)
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(
        ScaleByName(), (torch.ones(2, 1), torch.ones(2, 3)), dynamic_shapes=({0: batch}, {0: batch})
    )
    torch.export.save(program, str(model_dir / "1" / "model.pt2"))
    config = """
    name: "scale"
    platform: "pytorch_libtorch"
    default_model_filename: "model.pt2"
    max_batch_size: 8
    input [
      { name: "image" data_type: TYPE_FP32 dims: [ 3 ] },
      { name: "offset" data_type: TYPE_FP32 dims: [ 1 ] }
    ]
    output [ { name: "scaled" data_type: TYPE_FP32 dims: [ 3 ] } ]
    """
    instance = TorchModel(model_context(model_dir, config_text=config)).create_instance(CPU)
    image = np.arange(6, dtype=np.float32).reshape(2, 3)
    offset = np.array([[1], [10]], dtype=np.float32)
    (result,) = instance.execute([request("scale", image=image, offset=offset)], RecordingTimer())
    assert isinstance(result, dict)
    np.testing.assert_array_equal(result["scaled"], image * 2 + offset)


def test_config_without_tensors_cannot_be_completed(tmp_path: Path) -> None:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

    with pytest.raises(ConfigError, match="cannot auto-complete"):
        TorchModel.complete_config(ModelConfig(name="x"), tmp_path)


def test_tensor_positions() -> None:
    def specs(*names: str) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(name, DataType.FP32, (1,)) for name in names)

    assert tensor_positions(specs("INPUT__1", "INPUT__0")) == ["INPUT__0", "INPUT__1"]
    assert tensor_positions(specs("b", "a"), ["a", "b"]) == ["a", "b"]
    assert tensor_positions(specs("b", "a"), ["x"]) == ["b", "a"]


def test_cpu_instance_may_run_inline_only_with_one_torch_thread(addsub_dir: Path) -> None:
    import torch

    instance = TorchModel(model_context(addsub_dir)).create_instance(CPU)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert instance.may_run_inline
        torch.set_num_threads(2)
        assert not instance.may_run_inline  # the caller would wait for torch's intra-op pool
    finally:
        torch.set_num_threads(threads)
