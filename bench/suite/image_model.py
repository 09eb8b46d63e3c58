"""A realistic small image classifier for the suite: a MobileNetV2-shaped CNN in ONNX.

Built with onnx.helper (no torch needed) with random, He-scaled weights, batch-norm already folded
into the convolutions as an exported, optimised model would have it: a 3x3 stride-2 stem, seventeen
inverted-residual blocks (1x1 expand, 3x3 depthwise, 1x1 linear projection, residual add where the
shape allows), a 1x1 head, global average pooling and a 1000-class softmax. Input FP32
[batch, 3, 224, 224] (normalised RGB, NCHW), output FP32 [batch, 1000]. Width 0.5 gives about
2 M parameters and 0.1 GFLOP per image - the size of the small vision models packserve packs together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto

MODEL_NAME = "image_classifier"
INPUT_NAME = "INPUT"
OUTPUT_NAME = "OUTPUT"
IMAGE_SHAPE = (3, 224, 224)
NUM_CLASSES = 1000
ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # loads on every onnxruntime the project supports
# MobileNetV2's stages: (expansion, output channels at width 1.0, repeats, first stride).
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280

CONFIG_TEMPLATE = """\
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch_size}
input [ {{ name: "{input}" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] }} ]
output [ {{ name: "{output}" data_type: TYPE_FP32 dims: [ {classes} ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}
instance_group [ {{ count: {instances}, kind: KIND_CPU }} ]
"""


@dataclass(frozen=True, slots=True)
class ImageModelOptions:
    width: float = 0.5
    max_batch_size: int = 8
    instances: int = 2
    queue_delay_us: int = 2000
    seed: int = 0


def _channels(value: float) -> int:
    """Round to a multiple of 8, never below 90% of the value (MobileNet's rule)."""
    rounded = max(8, int(value + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * value else rounded


class _GraphBuilder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.parameters = 0
        self._count = 0

    def _name(self, kind: str) -> str:
        self._count += 1
        return f"{kind}_{self._count}"

    def _weight(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        self.parameters += array.size
        return name

    def conv(self, x: str, in_ch: int, out_ch: int, kernel: int, stride: int, groups: int, act: bool) -> str:
        from onnx import helper

        name = self._name("conv")
        fan_in = in_ch // groups * kernel * kernel
        weight = self.rng.standard_normal((out_ch, in_ch // groups, kernel, kernel)) * np.sqrt(2.0 / fan_in)
        bias = self.rng.standard_normal(out_ch) * 0.01  # the folded batch-norm shift
        pad = kernel // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self._weight(f"{name}_w", weight), self._weight(f"{name}_b", bias)],
                [name],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad, pad, pad, pad],
                group=groups,
            )
        )
        if not act:
            return name
        return self.relu6(name)

    def relu6(self, x: str) -> str:
        from onnx import helper

        if not any(init.name == "relu6_min" for init in self.initializers):
            self._weight("relu6_min", np.array(0.0))
            self._weight("relu6_max", np.array(6.0))
        name = self._name("relu6")
        self.nodes.append(helper.make_node("Clip", [x, "relu6_min", "relu6_max"], [name]))
        return name

    def op(self, op_type: str, inputs: list[str], **attributes: Any) -> str:
        from onnx import helper

        name = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [name], **attributes))
        return name


def build_classifier(options: ImageModelOptions) -> tuple[ModelProto, int]:
    """The ONNX model and its parameter count."""
    from onnx import TensorProto, checker, helper

    if options.width <= 0:
        raise ValueError(f"width must be > 0, got {options.width}")
    graph = _GraphBuilder(options.seed)
    channels = _channels(STEM_CHANNELS * options.width)
    x = graph.conv(INPUT_NAME, IMAGE_SHAPE[0], channels, 3, 2, 1, act=True)
    for expansion, base_channels, repeats, first_stride in STAGES:
        out_channels = _channels(base_channels * options.width)
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            hidden = channels * expansion
            y = graph.conv(x, channels, hidden, 1, 1, 1, act=True) if expansion != 1 else x
            y = graph.conv(y, hidden, hidden, 3, stride, hidden, act=True)
            y = graph.conv(y, hidden, out_channels, 1, 1, 1, act=False)
            if stride == 1 and channels == out_channels:
                y = graph.op("Add", [x, y])
            x, channels = y, out_channels
    head = max(HEAD_CHANNELS, _channels(HEAD_CHANNELS * options.width))
    x = graph.conv(x, channels, head, 1, 1, 1, act=True)
    x = graph.op("GlobalAveragePool", [x])
    x = graph.op("Flatten", [x], axis=1)
    fc_w = graph.rng.standard_normal((head, NUM_CLASSES)) * np.sqrt(1.0 / head)
    fc_b = np.zeros(NUM_CLASSES)
    logits = graph.op("Gemm", [x, graph._weight("fc_w", fc_w), graph._weight("fc_b", fc_b)])
    graph.nodes.append(helper.make_node("Softmax", [logits], [OUTPUT_NAME], axis=1))
    onnx_graph = helper.make_graph(
        graph.nodes,
        MODEL_NAME,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *IMAGE_SHAPE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", NUM_CLASSES])],
        initializer=graph.initializers,
    )
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    model.producer_name = "packserve-bench"
    checker.check_model(model)
    return model, graph.parameters


def write_image_model(
    repository: Path, options: ImageModelOptions | None = None, name: str = MODEL_NAME
) -> Path:
    """Write `<repository>/<name>/{config.pbtxt, 1/model.onnx}`; return the model folder. A file
    whose content is already right is left untouched, so a polling server sees no change."""
    options = options or ImageModelOptions()
    model, _ = build_classifier(options)
    model_dir = repository / name
    config = CONFIG_TEMPLATE.format(
        name=name,
        max_batch_size=options.max_batch_size,
        input=INPUT_NAME,
        output=OUTPUT_NAME,
        classes=NUM_CLASSES,
        queue_delay_us=options.queue_delay_us,
        instances=options.instances,
    )
    _write_if_changed(model_dir / "config.pbtxt", config.encode())
    _write_if_changed(model_dir / "1" / "model.onnx", model.SerializeToString())
    return model_dir


def _write_if_changed(path: Path, content: bytes) -> None:
    if path.is_file() and path.read_bytes() == content:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_bytes(content)
    temporary.replace(path)
