"""Build the example Triton-format model repository used by the README and end-to-end tests.

    python -m packserve.examples.simple_repository PATH

Writes (idempotently: a file whose content is already right is left untouched, so a polling
repository sees no change):
  simple           ONNX, INT32 INPUT0/INPUT1 [16] -> OUTPUT0 = sum, OUTPUT1 = difference, as Triton's example
  simple_v3        the same graph in version folder 3 with no config.pbtxt (exercises auto-complete)
  classifier       ONNX, FP32 INPUT [3, 8, 8] -> linear layer + softmax over 10 labelled classes
  python_add       python, FP32 INPUT0 [4] -> OUTPUT0 = 2 * INPUT0; a negative input fails that request
  simple_ensemble  `simple` twice: OUTPUT0 = 2 * INPUT0, OUTPUT1 = 2 * INPUT1
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnx import GraphProto, ValueInfoProto

# opset 17 / IR 8 load on every onnxruntime this project supports (>= 1.17).
ONNX_OPSET = 17
ONNX_IR_VERSION = 8
CLASS_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CLASSIFIER_SEED = 7

SIMPLE_CONFIG = """\
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
dynamic_batching { max_queue_delay_microseconds: 500 }
instance_group [ { count: 2, kind: KIND_CPU } ]
"""

CLASSIFIER_CONFIG = """\
name: "classifier"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "INPUT" data_type: TYPE_FP32 dims: [ 3, 8, 8 ] } ]
output [ { name: "OUTPUT" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]
dynamic_batching { }
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

PYTHON_ADD_CONFIG = """\
name: "python_add"
backend: "python"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
dynamic_batching { }
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

# Written exactly as for Triton's python backend.
PYTHON_ADD_MODEL = '''\
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """OUTPUT0 = 2 * INPUT0. A request holding a negative value gets an error of its own."""

    def initialize(self, args):
        model_config = json.loads(args["model_config"])
        output_config = pb_utils.get_output_config_by_name(model_config, "OUTPUT0")
        self.output_dtype = pb_utils.triton_string_to_numpy(output_config["data_type"])

    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            if (values < 0).any():
                error = pb_utils.TritonError("python_add: INPUT0 must not contain negative values")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            doubled = (values * 2).astype(self.output_dtype)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT0", doubled)]))
        return responses

    def finalize(self):
        pass
'''

ENSEMBLE_CONFIG = """\
name: "simple_ensemble"
platform: "ensemble"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
ensemble_scheduling {
  step [
    {
      model_name: "simple"
      model_version: -1
      input_map { key: "INPUT0" value: "INPUT0" }
      input_map { key: "INPUT1" value: "INPUT1" }
      output_map { key: "OUTPUT0" value: "sum" }
      output_map { key: "OUTPUT1" value: "difference" }
    },
    {
      model_name: "simple"
      model_version: -1
      input_map { key: "INPUT0" value: "sum" }
      input_map { key: "INPUT1" value: "difference" }
      output_map { key: "OUTPUT0" value: "OUTPUT0" }
      output_map { key: "OUTPUT1" value: "OUTPUT1" }
    }
  ]
}
"""


def simple_onnx() -> bytes:
    """INT32 [batch, 16] x2 -> sum and difference."""
    from onnx import TensorProto, helper

    def tensor(name: str) -> ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.INT32, ["batch", 16])

    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "simple",
        [tensor("INPUT0"), tensor("INPUT1")],
        [tensor("OUTPUT0"), tensor("OUTPUT1")],
    )
    return _serialize(graph)


def classifier_weights() -> tuple[np.ndarray, np.ndarray]:
    """The fixed weights of `classifier`: W [192, 10], b [10] (seeded, so builds are identical)."""
    rng = np.random.default_rng(CLASSIFIER_SEED)
    weights = rng.normal(0.0, 0.1, size=(3 * 8 * 8, len(CLASS_LABELS))).astype(np.float32)
    bias = rng.normal(0.0, 0.1, size=(len(CLASS_LABELS),)).astype(np.float32)
    return weights, bias


def classifier_onnx() -> bytes:
    """FP32 [batch, 3, 8, 8] -> softmax(flatten(x) @ W + b) over 10 classes."""
    from onnx import TensorProto, helper, numpy_helper

    weights, bias = classifier_weights()
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["INPUT"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["OUTPUT"], axis=1),
        ],
        "classifier",
        [helper.make_tensor_value_info("INPUT", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("OUTPUT", TensorProto.FLOAT, ["batch", len(CLASS_LABELS)])],
        initializer=[numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "B")],
    )
    return _serialize(graph)


def _serialize(graph: GraphProto) -> bytes:
    from onnx import checker, helper

    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="packserve"
    )
    model.ir_version = ONNX_IR_VERSION
    checker.check_model(model)
    return bytes(model.SerializeToString())


def build_simple_repository(root: Path) -> Path:
    """Write the example repository under `root` (created if missing) and return `root`."""
    root = Path(root)
    simple = simple_onnx()
    _write(root / "simple" / "config.pbtxt", SIMPLE_CONFIG)
    _write(root / "simple" / "1" / "model.onnx", simple)
    _write(root / "simple_v3" / "3" / "model.onnx", simple)
    _write(root / "classifier" / "config.pbtxt", CLASSIFIER_CONFIG)
    _write(root / "classifier" / "labels.txt", "\n".join(CLASS_LABELS) + "\n")
    _write(root / "classifier" / "1" / "model.onnx", classifier_onnx())
    _write(root / "python_add" / "config.pbtxt", PYTHON_ADD_CONFIG)
    _write(root / "python_add" / "1" / "model.py", PYTHON_ADD_MODEL)
    _write(root / "simple_ensemble" / "config.pbtxt", ENSEMBLE_CONFIG)
    # Triton wants a (empty) version folder for an ensemble too.
    (root / "simple_ensemble" / "1").mkdir(parents=True, exist_ok=True)
    return root


def _write(path: Path, content: str | bytes) -> None:
    data = content.encode("utf-8") if isinstance(content, str) else content
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a server polling the repository never reads half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m packserve.examples.simple_repository PATH", file=sys.stderr)
        return 2
    root = build_simple_repository(Path(args[0]))
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
