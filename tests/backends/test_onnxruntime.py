from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper
from tritonclient.grpc.model_config_pb2 import ModelConfig

from packserve.backends.base import InstanceContext
from packserve.backends.onnxruntime import DEFAULT_MAX_BATCH_SIZE, OnnxRuntimeModel
from packserve.config.parse import parse_config_text
from packserve.errors import ConfigError, ModelExecutionError
from packserve.examples.simple_repository import SIMPLE_CONFIG, simple_onnx
from tests.fakes.backends import RecordingTimer, model_context, request

CPU = InstanceContext(name="m_0_0", kind="KIND_CPU", device_id=0)


def write_onnx(path: Path, nodes: list[Any], inputs: list[Any], outputs: list[Any]) -> None:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


@pytest.fixture
def simple_dir(tmp_path: Path) -> Path:
    model_dir = tmp_path / "simple"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.onnx").write_bytes(simple_onnx())
    (model_dir / "config.pbtxt").write_text(SIMPLE_CONFIG)
    return model_dir


def ints(rows: int, start: int = 0) -> np.ndarray:
    return np.arange(start, start + rows * 16, dtype=np.int32).reshape(rows, 16)


@pytest.fixture
def timer() -> RecordingTimer:
    return RecordingTimer()


def test_batch_is_split_back_per_request(simple_dir: Path, timer: RecordingTimer) -> None:
    model = OnnxRuntimeModel(model_context(simple_dir))
    instance = model.create_instance(CPU)
    a0, a1, b0, b1 = ints(2), ints(2, 100), ints(3, 7), ints(3, 1)
    results = instance.execute(
        [request("simple", INPUT0=a0, INPUT1=a1), request("simple", INPUT0=b0, INPUT1=b1)], timer
    )
    assert timer.calls == ["inputs_ready", "infer_done"]
    first, second = results
    assert isinstance(first, dict) and isinstance(second, dict)
    np.testing.assert_array_equal(first["OUTPUT0"], a0 + a1)
    np.testing.assert_array_equal(first["OUTPUT1"], a0 - a1)
    np.testing.assert_array_equal(second["OUTPUT0"], b0 + b1)
    np.testing.assert_array_equal(second["OUTPUT1"], b0 - b1)
    # Split results are views of the batch output, not copies.
    assert np.shares_memory(first["OUTPUT0"], second["OUTPUT0"].base)


def test_only_requested_outputs_are_computed_and_returned(simple_dir: Path, timer: RecordingTimer) -> None:
    model = OnnxRuntimeModel(model_context(simple_dir))
    instance = model.create_instance(CPU)
    asked: list[list[str]] = []
    session = instance.session  # type: ignore[attr-defined]

    class SpySession:
        def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> Any:
            asked.append(list(names))
            return session.run(names, feeds)

    instance._session = SpySession()  # type: ignore[attr-defined]
    x, y = ints(1), ints(1, 3)
    (only_diff,) = instance.execute([request("simple", ["OUTPUT1"], INPUT0=x, INPUT1=y)], timer)
    assert asked == [["OUTPUT1"]]
    assert isinstance(only_diff, dict) and list(only_diff) == ["OUTPUT1"]
    np.testing.assert_array_equal(only_diff["OUTPUT1"], x - y)

    both = instance.execute(
        [
            request("simple", ["OUTPUT1"], INPUT0=x, INPUT1=y),
            request("simple", ["OUTPUT0"], INPUT0=x, INPUT1=y),
        ],
        timer,
    )
    assert asked[-1] == ["OUTPUT0", "OUTPUT1"]
    assert [list(result) for result in both] == [["OUTPUT1"], ["OUTPUT0"]]  # type: ignore[arg-type]


def test_instances_share_one_session(simple_dir: Path) -> None:
    model = OnnxRuntimeModel(model_context(simple_dir))
    first = model.create_instance(CPU)
    second = model.create_instance(InstanceContext(name="simple_0_1", kind="KIND_CPU", device_id=0))
    assert first.session is second.session  # type: ignore[attr-defined]
    options = first.session.get_session_options()  # type: ignore[attr-defined]
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    # All of a run happens on the calling thread: the core may run cheap batches on the loop.
    assert first.may_run_inline


def test_intra_op_threads_come_from_config_parameter(simple_dir: Path) -> None:
    text = SIMPLE_CONFIG + 'parameters { key: "intra_op_thread_count" value: { string_value: "2" } }\n'
    model = OnnxRuntimeModel(model_context(simple_dir, config_text=text))
    instance = model.create_instance(CPU)
    assert instance.session.get_session_options().intra_op_num_threads == 2  # type: ignore[attr-defined]
    assert not instance.may_run_inline  # the caller would wait for the intra-op pool


def test_gpu_instance_without_onnxruntime_gpu_fails_clearly(simple_dir: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed")
    model = OnnxRuntimeModel(model_context(simple_dir))
    with pytest.raises(Exception, match="onnxruntime-gpu"):
        model.create_instance(InstanceContext(name="simple_1_0", kind="KIND_GPU", device_id=0))


def test_bytes_tensors_round_trip_through_a_string_graph(tmp_path: Path, timer: RecordingTimer) -> None:
    model_dir = tmp_path / "echo"
    write_onnx(
        model_dir / "1" / "model.onnx",
        [helper.make_node("Identity", ["TEXT"], ["ECHO"])],
        [helper.make_tensor_value_info("TEXT", TensorProto.STRING, ["batch", 2])],
        [helper.make_tensor_value_info("ECHO", TensorProto.STRING, ["batch", 2])],
    )
    context = model_context(model_dir, config_text='name: "echo"\nplatform: "onnxruntime_onnx"\n')
    assert context.spec.inputs[0].datatype.wire_name == "BYTES"
    instance = OnnxRuntimeModel(context).create_instance(CPU)
    text = np.array([[b"caf\xc3\xa9", b"x"]], dtype=np.object_)
    more = np.array([[b"", b"longer text"], [b"a", b"b"]], dtype=np.object_)
    first, second = instance.execute([request("echo", TEXT=text), request("echo", TEXT=more)], timer)
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["ECHO"].tolist() == [[b"caf\xc3\xa9", b"x"]]
    assert second["ECHO"].tolist() == more.tolist()


def test_runtime_failure_becomes_model_execution_error(simple_dir: Path, timer: RecordingTimer) -> None:
    instance = OnnxRuntimeModel(model_context(simple_dir)).create_instance(CPU)
    bad = np.zeros((1, 15), dtype=np.int32)  # the core would reject this; the backend must not crash
    with pytest.raises(ModelExecutionError, match="model 'simple'"):
        instance.execute([request("simple", INPUT0=bad, INPUT1=bad)], timer)


def test_requests_with_different_variable_dims_run_separately(tmp_path: Path, timer: RecordingTimer) -> None:
    model_dir = tmp_path / "neg"
    write_onnx(
        model_dir / "1" / "model.onnx",
        [helper.make_node("Neg", ["X"], ["Y"])],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", "n"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", "n"])],
    )
    instance = OnnxRuntimeModel(model_context(model_dir, config_text="")).create_instance(CPU)
    short, long = np.ones((1, 2), np.float32), np.ones((2, 5), np.float32)
    first, second = instance.execute([request("neg", X=short), request("neg", X=long)], timer)
    assert isinstance(first, dict) and isinstance(second, dict)
    np.testing.assert_array_equal(first["Y"], -short)
    np.testing.assert_array_equal(second["Y"], -long)
    # Same-shape requests share one run even when interleaved with others; order is kept.
    runs: list[int] = []
    session = instance.session
    original = session.run
    session.run = lambda names, feeds: runs.append(len(feeds["X"])) or original(names, feeds)  # type: ignore[method-assign]
    try:
        inputs = [short, long, 3 * short, 2 * long]
        results = instance.execute([request("neg", X=x) for x in inputs], timer)
    finally:
        session.run = original  # type: ignore[method-assign]
    assert sorted(runs) == [2, 4]
    for x, result in zip(inputs, results, strict=True):
        assert isinstance(result, dict)
        np.testing.assert_array_equal(result["Y"], -x)


def test_auto_complete_fills_batching_and_tensors(tmp_path: Path) -> None:
    version_dir = tmp_path / "simple_v3" / "3"
    version_dir.mkdir(parents=True)
    (version_dir / "model.onnx").write_bytes(simple_onnx())
    config = ModelConfig(name="simple_v3")
    OnnxRuntimeModel.complete_config(config, version_dir)
    assert config.max_batch_size == DEFAULT_MAX_BATCH_SIZE
    assert config.HasField("dynamic_batching")
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("INPUT0", 8, [16]),
        ("INPUT1", 8, [16]),
    ]
    assert [(t.name, list(t.dims)) for t in config.output] == [("OUTPUT0", [16]), ("OUTPUT1", [16])]


def test_auto_complete_keeps_fixed_batch_graph_unbatched(tmp_path: Path) -> None:
    version_dir = tmp_path / "fixed" / "1"
    write_onnx(
        version_dir / "model.onnx",
        [helper.make_node("Relu", ["X"], ["Y"])],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 3])],
    )
    config = ModelConfig(name="fixed")
    OnnxRuntimeModel.complete_config(config, version_dir)
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [1, 3]


def test_auto_complete_fills_what_a_partial_config_leaves_out(tmp_path: Path) -> None:
    version_dir = tmp_path / "simple" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "model.onnx").write_bytes(simple_onnx())
    config = parse_config_text('name: "simple"\nmax_batch_size: 8\ninput [ { name: "INPUT0" } ]\n')
    OnnxRuntimeModel.complete_config(config, version_dir)
    assert config.max_batch_size == 8
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("INPUT0", 8, [16]),
        ("INPUT1", 8, [16]),
    ]
    assert len(config.output) == 2


@pytest.mark.parametrize(
    ("tensor_text", "message"),
    [
        (
            'input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] } ]',
            "config data type TYPE_FP32 but the ONNX graph expects TYPE_INT32",
        ),
        (
            'input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 8 ] } ]',
            r"config dims \[8\] do not match the ONNX graph's \[16\]",
        ),
        ('input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 4, 4 ] } ]', r"config dims \[4, 4\]"),
        (
            'input [ { name: "IMAGE" data_type: TYPE_INT32 dims: [ 16 ] } ]',
            "lists input 'IMAGE' but the ONNX graph has no such input",
        ),
        ('output [ { name: "OUTPUT9" data_type: TYPE_INT32 dims: [ 16 ] } ]', "output 'OUTPUT9'"),
    ],
)
def test_config_that_disagrees_with_graph_is_rejected(tmp_path: Path, tensor_text: str, message: str) -> None:
    version_dir = tmp_path / "simple" / "1"
    version_dir.mkdir(parents=True)
    (version_dir / "model.onnx").write_bytes(simple_onnx())
    config = parse_config_text(f'name: "simple"\nmax_batch_size: 8\n{tensor_text}\n')
    with pytest.raises(ConfigError, match=message) as caught:
        OnnxRuntimeModel.complete_config(config, version_dir)
    assert "model 'simple'" in str(caught.value)


def test_load_checks_a_complete_config_against_the_graph(simple_dir: Path) -> None:
    context = model_context(simple_dir)
    # The file changes under a config that was complete: the load itself must notice.
    write_onnx(
        simple_dir / "1" / "model.onnx",
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 16]) for n in ("INPUT0", "INPUT1")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 16]) for n in ("OUTPUT0", "OUTPUT1")],
    )
    with pytest.raises(
        ConfigError, match="input 'INPUT0': config data type TYPE_INT32 but the ONNX graph expects TYPE_FP32"
    ):
        OnnxRuntimeModel(context)


def test_batching_config_on_fixed_batch_graph_is_rejected(tmp_path: Path) -> None:
    version_dir = tmp_path / "fixed" / "1"
    write_onnx(
        version_dir / "model.onnx",
        [helper.make_node("Relu", ["X"], ["Y"])],
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 3])],
    )
    config = parse_config_text('name: "fixed"\nmax_batch_size: 4\n')
    with pytest.raises(ConfigError, match="max_batch_size > 0 needs a variable first dimension"):
        OnnxRuntimeModel.complete_config(config, version_dir)


def test_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not found"):
        OnnxRuntimeModel.complete_config(ModelConfig(name="m"), tmp_path / "m" / "1")
