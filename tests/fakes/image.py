"""Helpers for the image backend tests: specs built directly, synthetic photos (the recording
timer is tests.fakes.backends.RecordingTimer)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tritonclient.grpc.model_config_pb2 import ModelConfig

from packserve.backends.base import InstanceContext, ModelContext
from packserve.backends.image import ImageModel
from packserve.messages import InferRequest, RequestedOutput
from packserve.model_spec import ModelSpec, TensorSpec, VersionPolicy
from packserve.types import DataType

IMAGE_INPUT = TensorSpec("IMAGE", DataType.BYTES, (1,))


def output(name: str, datatype: DataType, dims: Sequence[int]) -> TensorSpec:
    return TensorSpec(name, datatype, tuple(dims))


def spec(
    outputs: Sequence[TensorSpec],
    parameters: Mapping[str, str],
    inputs: Sequence[TensorSpec] = (IMAGE_INPUT,),
    max_batch_size: int = 8,
    name: str = "prep",
) -> ModelSpec:
    return ModelSpec(
        name=name,
        platform="",
        backend="image",
        max_batch_size=max_batch_size,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        dynamic_batching=None,
        instance_groups=(),
        version_policy=VersionPolicy(),
        default_model_filename="",
        parameters=dict(parameters),
    )


def model(model_spec: ModelSpec) -> ImageModel:
    context = ModelContext(
        spec=model_spec,
        config=ModelConfig(name=model_spec.name),
        repository=Path("/nonexistent"),
        model_dir=Path("/nonexistent") / model_spec.name,
        version=1,
        version_dir=Path("/nonexistent/1"),
    )
    return ImageModel(context)


def cpu_instance(model_spec: ModelSpec):  # type: ignore[no-untyped-def]
    return model(model_spec).create_instance(InstanceContext("prep_0_0", "KIND_CPU", 0))


def image_request(
    *images: bytes, outputs: Sequence[str] | None = None, batching: bool = True
) -> InferRequest:
    array = np.empty((len(images), 1) if batching else (1,), dtype=object)
    for index, data in enumerate(images):
        array[index if not batching else (index, 0)] = data
    requested = None if outputs is None else [RequestedOutput(n) for n in outputs]
    return InferRequest(model_name="prep", inputs={"IMAGE": array}, outputs=requested)


def photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A natural-looking RGB uint8 image: smooth shading, soft blobs, hard-edged shapes, fine
    texture and sensor noise, so JPEG and resampling behave as on photographs."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(
        rng.uniform(40, 215, (6, 8, 3)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
    )
    blobs = cv2.GaussianBlur(
        rng.uniform(-40, 40, (height // 16 + 1, width // 16 + 1, 3)).astype(np.float32), (3, 3), 0
    )
    image = base + cv2.resize(blobs, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(12):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            cv2.circle(image, center, int(rng.integers(5, max(6, width // 8))), color, -1, cv2.LINE_AA)
        else:
            corner = (
                center[0] + int(rng.integers(10, width // 4 + 11)),
                center[1] + int(rng.integers(10, height // 4 + 11)),
            )
            cv2.rectangle(image, center, corner, color, -1, cv2.LINE_AA)
    image += rng.normal(0, 4, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg(width: int, height: int, seed: int = 0, quality: int = 92) -> bytes:
    return encode(photo(width, height, seed), "JPEG", quality=quality)
