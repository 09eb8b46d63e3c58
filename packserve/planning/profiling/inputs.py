"""Request inputs for profiling: random tensors shaped by the model metadata, and real JPEG bytes
for BYTES inputs (a synthetic but natural-looking photo: smooth gradients, shapes and noise, so the
decoder does the work a camera image costs)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from packserve.core.views import ModelMetadata
from packserve.errors import InvalidArgumentError
from packserve.types import DataType

# Stand-in size for variable dimensions (-1) other than the batch dimension.
VARIABLE_DIM = 16


def natural_jpeg(width: int = 640, height: int = 480, seed: int = 0, quality: int = 90) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            120 + 80 * np.sin(x / width * np.pi * rng.uniform(1, 3)),
            110 + 70 * np.cos(y / height * np.pi * rng.uniform(1, 3)),
            100 + 60 * np.sin((x + y) / (width + height) * np.pi * rng.uniform(2, 5)),
        ],
        axis=-1,
    )
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(20, max(21, width // 4)))
        fill = tuple(int(v) for v in rng.integers(0, 255, 3))
        draw.ellipse((x0, y0, x0 + size, y0 + size), fill=fill)
    image = image.filter(ImageFilter.GaussianBlur(1.5))
    noisy = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, (height, width, 3)).astype(np.int16)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def make_inputs(
    metadata: ModelMetadata, batch_size: int, batching: bool, seed: int = 0, jpeg: bytes | None = None
) -> dict[str, np.ndarray]:
    """One request's inputs: `batch_size` rows for batching models, the declared shape otherwise.
    BYTES inputs carry `jpeg` (a synthetic photo when None)."""
    rng = np.random.default_rng(seed)
    inputs: dict[str, np.ndarray] = {}
    for tensor in metadata.inputs:
        dims = list(tensor.shape[1:] if batching else tensor.shape)
        shape = ([batch_size] if batching else []) + [VARIABLE_DIM if d < 0 else d for d in dims]
        if tensor.datatype is DataType.BYTES:
            if jpeg is None:
                jpeg = natural_jpeg(seed=seed)
            array: np.ndarray = np.empty(shape, dtype=np.object_)
            array.fill(jpeg)
        elif tensor.datatype is DataType.BOOL:
            array = rng.random(shape) < 0.5
        elif tensor.datatype.numpy.kind in "iu":
            # Small values: index-like inputs stay in range for embeddings and gathers.
            array = rng.integers(0, 8, size=shape).astype(tensor.datatype.numpy)
        elif tensor.datatype.numpy.kind == "f":
            array = rng.random(shape, dtype=np.float32).astype(tensor.datatype.numpy)
        else:
            raise InvalidArgumentError(
                f"model '{metadata.name}': input '{tensor.name}' has datatype {tensor.datatype.wire_name}, "
                "which the profiler cannot generate"
            )
        inputs[tensor.name] = np.asarray(array)
    return inputs
