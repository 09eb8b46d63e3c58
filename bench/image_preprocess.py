"""Images/s for decode + letterbox(640) + normalize: packserve's CPU image backend vs plain Pillow.

packserve runs as the server runs it: `ImageModel.execute` on a CPU instance with batches of
single-image requests, its pool sized to the cores. Pillow gets the same cores (a thread pool of the
same size; Pillow releases the GIL while decoding and resizing) and does the same work: decode, RGB,
bilinear resize, paste on a gray 640x640 canvas, /255 into a float32 NCHW array. A third row shows
Pillow with `draft()` (its own DCT-domain downscale), the fairest fast Pillow.

Images are synthetic photographs (smooth shading, blobs, hard-edged shapes, fine texture, sensor
noise) saved as quality-90 JPEGs, so decode cost is close to a camera image of the same size.

    .venv/bin/python bench/image_preprocess.py [--cores 2] [--images 96] [--batch 8]
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tritonclient.grpc.model_config_pb2 import ModelConfig

from packserve.backends.base import ExecutionTimer, InstanceContext, ModelContext
from packserve.backends.image import ImageModel
from packserve.messages import InferRequest
from packserve.model_spec import ModelSpec, TensorSpec, VersionPolicy
from packserve.types import DataType

SIZE = 640
BILINEAR = Image.Resampling.BILINEAR


def synthetic_photo(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shading = rng.uniform(40, 215, (6, 8, 3)).astype(np.float32)
    image = cv2.resize(shading, (width, height), interpolation=cv2.INTER_CUBIC)
    blobs = rng.uniform(-40, 40, (height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
    image += cv2.resize(blobs, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(20):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            cv2.circle(image, (x, y), int(rng.integers(5, width // 8)), color, -1, cv2.LINE_AA)
        else:
            corner = (x + int(rng.integers(10, width // 4)), y + int(rng.integers(10, height // 4)))
            cv2.rectangle(image, (x, y), corner, color, -1, cv2.LINE_AA)
    image += rng.normal(0, 6, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def jpegs(width: int, height: int, count: int) -> list[bytes]:
    out = []
    for seed in range(count):
        buffer = io.BytesIO()
        Image.fromarray(synthetic_photo(width, height, seed)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


class _NoTimer(ExecutionTimer):
    def inputs_ready(self) -> None:
        pass

    def infer_done(self) -> None:
        pass


def packserve_runner(cores: int, batch: int) -> Callable[[list[bytes]], None]:
    spec = ModelSpec(
        name="letterbox",
        platform="",
        backend="image",
        max_batch_size=batch,
        inputs=(TensorSpec("IMAGE", DataType.BYTES, (1,)),),
        outputs=(
            TensorSpec("DET", DataType.FP32, (3, SIZE, SIZE)),
            TensorSpec("DET_meta", DataType.FP32, (6,)),
        ),
        dynamic_batching=None,
        instance_groups=(),
        version_policy=VersionPolicy(),
        default_model_filename="",
        parameters={"DET.op": "letterbox", "threads": str(cores)},
    )
    context = ModelContext(spec, ModelConfig(name="letterbox"), Path("."), Path("."), 1, Path("."))
    instance = ImageModel(context).create_instance(InstanceContext("letterbox_0_0", "KIND_CPU", 0))
    timer = _NoTimer()

    def run(images: list[bytes]) -> None:
        for start in range(0, len(images), batch):
            requests = []
            for data in images[start : start + batch]:
                tensor = np.empty((1, 1), dtype=object)
                tensor[0, 0] = data
                requests.append(InferRequest(model_name="letterbox", inputs={"IMAGE": tensor}))
            for result in instance.execute(requests, timer):
                if not isinstance(result, dict):
                    raise RuntimeError(result)

    return run


def pillow_letterbox(data: bytes, draft: bool) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        if draft:
            scale = SIZE / max(image.size)
            image.draft("RGB", (int(image.width * scale), int(image.height * scale)))
        rgb = image.convert("RGB")
        width, height = image.size if not draft else rgb.size
    scale = min(SIZE / width, SIZE / height)
    new_w, new_h = round(width * scale), round(height * scale)
    canvas = Image.new("RGB", (SIZE, SIZE), (114, 114, 114))
    canvas.paste(rgb.resize((new_w, new_h), BILINEAR), ((SIZE - new_w) // 2, (SIZE - new_h) // 2))
    return (np.asarray(canvas, dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()


def pillow_runner(cores: int, draft: bool) -> Callable[[list[bytes]], None]:
    pool = ThreadPoolExecutor(max_workers=cores)

    def run(images: list[bytes]) -> None:
        list(pool.map(lambda data: pillow_letterbox(data, draft), images))

    return run


def images_per_second(run: Callable[[list[bytes]], None], images: list[bytes], repeats: int) -> float:
    run(images[: min(len(images), 8)])  # warm up pools and caches
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        run(images)
        best = max(best, len(images) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, available[: args.cores])
    runners = {
        "packserve (simplejpeg + OpenCV)": packserve_runner(args.cores, args.batch),
        "Pillow": pillow_runner(args.cores, draft=False),
        "Pillow + draft()": pillow_runner(args.cores, draft=True),
    }
    setup = f"{args.cores} cores, batch {args.batch}, best of {args.repeats}"
    print(f"decode + letterbox({SIZE}) + normalize, {setup}")
    print(f"{'pipeline':34} {'640x480 img/s':>14} {'1280x720 img/s':>15}")
    results: dict[str, list[float]] = {name: [] for name in runners}
    for width, height in ((640, 480), (1280, 720)):
        images = jpegs(width, height, args.images)
        for name, run in runners.items():
            results[name].append(images_per_second(run, images, args.repeats))
    for name, rates in results.items():
        print(f"{name:34} {rates[0]:14.1f} {rates[1]:15.1f}")
    ours, plain = results["packserve (simplejpeg + OpenCV)"], results["Pillow"]
    print(f"{'speedup vs Pillow':34} {ours[0] / plain[0]:13.2f}x {ours[1] / plain[1]:14.2f}x")


if __name__ == "__main__":
    main()
