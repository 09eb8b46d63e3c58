"""How a crop_boxes output cuts its regions: grown around their centres (expand), cut directly to
the crop size or first at their own size (crop_mode native), stretched or kept at their aspect
ratio (keep_ratio, padded on the right, widths shared per request when the width is variable).

Pure numpy / OpenCV on one image and its regions (already on the image's pixels); called on the
instance's pool threads. Normalization and layout are done afterwards by `write_canvas`.
"""

from __future__ import annotations

import cv2
import numpy as np

from packserve.backends.image.cpu_ops import crop_native, crop_regions
from packserve.backends.image.crop_params import RegionCut
from packserve.backends.image.params import Pipeline


def expand_regions(boxes: np.ndarray, factor: float) -> np.ndarray:
    """Grow boxes ([N,4] xyxy) or quadrilaterals ([N,8]) by `factor` around their centres."""
    if factor == 1.0 or len(boxes) == 0:
        return boxes
    points = boxes.reshape(len(boxes), -1, 2)
    centres = points.mean(axis=1, keepdims=True)
    return ((points - centres) * factor + centres).reshape(boxes.shape).astype(np.float32)


def region_sizes(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Natural (width, height) of each box or quadrilateral, in pixels."""
    if boxes.shape[1] == 4:
        return boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    quad = boxes.reshape(-1, 4, 2)
    width = (
        np.linalg.norm(quad[:, 1] - quad[:, 0], axis=1) + np.linalg.norm(quad[:, 2] - quad[:, 3], axis=1)
    ) / 2
    height = (
        np.linalg.norm(quad[:, 3] - quad[:, 0], axis=1) + np.linalg.norm(quad[:, 2] - quad[:, 1], axis=1)
    ) / 2
    return width, height


def keep_ratio_widths(pipeline: Pipeline, sizes: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, int]:
    """Each region's width at the crop height with its aspect ratio kept (at least 1, at most the
    widest crop), and the request's common canvas width: the widest, at least the pipeline's width
    (as PP-OCR's recognizer pads to 320 at least), rounded up to a width_bucket multiple.
    `sizes` are the regions' (widths, heights)."""
    cut = _cut(pipeline)
    widths, heights = sizes
    scaled = np.ceil(pipeline.height * widths / np.maximum(heights, 1.0)).astype(int)
    fitted = np.clip(scaled, 1, cut.max_width)
    widest = max(pipeline.width, int(fitted.max()) if len(fitted) else 0)
    canvas = widest
    if widest > pipeline.width:  # round up to the bucket, never past the limit
        canvas = min(cut.max_width, -(-widest // cut.width_bucket) * cut.width_bucket)
    return np.minimum(fitted, canvas), canvas


def cut_regions(image: np.ndarray, boxes: np.ndarray, pipeline: Pipeline) -> np.ndarray:
    """uint8 [N, H, W, C] crops of every region (in the image's pixels) as the pipeline's cut says.
    ValueError on malformed regions."""
    cut = _cut(pipeline)
    boxes = expand_regions(boxes, cut.expand)
    if cut.native:
        return _native_crops(image, boxes, pipeline)
    size = (pipeline.width, pipeline.height)
    pad = pipeline.pad_value
    if not cut.keep_ratio:
        return crop_regions(image, boxes, size, interpolation=pipeline.interpolation, pad_value=pad)
    fitted, canvas = keep_ratio_widths(pipeline, region_sizes(boxes))
    crops = np.full((len(boxes), pipeline.height, canvas, image.shape[2]), pad, np.uint8)
    for index, width in enumerate(fitted):
        crops[index, :, :width] = crop_regions(
            image,
            boxes[index : index + 1],
            (int(width), pipeline.height),
            interpolation=pipeline.interpolation,
            pad_value=pad,
        )[0]
    return crops


def _native_crops(image: np.ndarray, boxes: np.ndarray, pipeline: Pipeline) -> np.ndarray:
    """crop_mode native: each region cut at its own size, then resized (keep_ratio: to the crop
    height keeping its ratio, padded on the right) with bilinear interpolation."""
    height = pipeline.height
    if len(boxes) == 0:
        return np.empty((0, height, pipeline.width, image.shape[2]), np.uint8)
    natives = [crop_native(image, box) for box in boxes]
    if not _cut(pipeline).keep_ratio:
        size = (pipeline.width, height)
        return np.stack([cv2.resize(n, size, interpolation=cv2.INTER_LINEAR) for n in natives])
    shapes = np.array([n.shape[:2] for n in natives], dtype=np.float64).reshape(-1, 2)
    fitted, canvas = keep_ratio_widths(pipeline, (shapes[:, 1], shapes[:, 0]))
    crops = np.full((len(boxes), height, canvas, image.shape[2]), pipeline.pad_value, np.uint8)
    for index, (native, width) in enumerate(zip(natives, fitted, strict=True)):
        resized = cv2.resize(native, (int(width), height), interpolation=cv2.INTER_LINEAR)
        crops[index, :, : int(width)] = resized.reshape(height, int(width), -1)
    return crops


def _cut(pipeline: Pipeline) -> RegionCut:
    if pipeline.region is None:
        raise ValueError(f"output '{pipeline.name}' is not a crop_boxes output")
    return pipeline.region
