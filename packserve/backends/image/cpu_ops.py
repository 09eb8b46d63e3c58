"""OpenCV/numpy pixel work of the CPU path: resize + pad/crop + normalize into a preallocated slot,
and cropping regions (boxes or quadrilaterals) out of a decoded image.

Normalization is one pass through a 256-entry lookup table per channel (cv2.LUT): the table already
holds `(v * scale - mean) / std` in the output dtype, so scale, mean, std, the float conversion and
the FP16 cast cost one read and one write. Called on worker/pool threads; OpenCV releases the GIL.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import simplejpeg

from packserve.backends.image.geometry import Transform
from packserve.backends.image.params import Normalization, Pipeline

CV2_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
# Crops (warps) sample points: an antialiased filter has no meaning there, plain bilinear is used.
CV2_INTERPOLATION["linear_antialias"] = cv2.INTER_LINEAR


def normalization_table(
    normalization: Normalization, dtype: np.dtype, *, stepwise: bool = False
) -> np.ndarray:
    """[256, 3] table: entry [v, c] is the normalized value of pixel value v in output channel c
    (mean and std are given in the output's channel order, as the model sees them).

    Decode outputs fold the formula into one float64 multiply-add. `stepwise` (crop_boxes outputs)
    computes `(v * scale - mean) / std` in float32 steps instead: the arithmetic region maps cut
    their crops with before the crops moved to crop models, so no crop changed by a bit (the two
    differ by one float32 ulp on some entries)."""
    if stepwise:
        pixels = np.arange(256, dtype=np.float32)[:, None]
        mean, std = np.asarray(normalization.mean, np.float32), np.asarray(normalization.std, np.float32)
        return ((pixels * np.float32(normalization.scale) - mean) / std).astype(dtype)
    gain, bias = normalization.gain_and_bias()
    values = np.arange(256, dtype=np.float64)[:, None]
    return (values * np.asarray(gain) + np.asarray(bias)).astype(dtype)


def place(resized: np.ndarray, transform: Transform, pad_value: int) -> np.ndarray:
    """Put the resized image on its canvas at the transform's offset: pad (letterbox) and/or crop
    (center crop). Returns a C-contiguous uint8 [canvas_h, canvas_w, 3]."""
    height, width = resized.shape[:2]
    ox, oy = transform.offset_x, transform.offset_y
    x0, y0 = max(0, -ox), max(0, -oy)
    x1 = min(width, transform.canvas_width - ox)
    y1 = min(height, transform.canvas_height - oy)
    region = resized[y0:y1, x0:x1]
    left, top = max(0, ox), max(0, oy)
    right = transform.canvas_width - left - region.shape[1]
    bottom = transform.canvas_height - top - region.shape[0]
    if left or top or right or bottom:
        value = (pad_value, pad_value, pad_value)
        return cv2.copyMakeBorder(region, top, bottom, left, right, cv2.BORDER_CONSTANT, value=value)
    return np.ascontiguousarray(region)


def render(
    pixels: np.ndarray, transform: Transform, pipeline: Pipeline, table: np.ndarray | None, out: np.ndarray
) -> None:
    """One row of one output: resize `pixels` (the upright RGB image, maybe DCT-downscaled) and
    write it, padded/cropped and normalized, into `out` ([3, H, W] or [H, W, 3])."""
    size = (transform.resize_width, transform.resize_height)
    if (pixels.shape[1], pixels.shape[0]) != size:
        pixels = resize(pixels, size, pipeline.interpolation)
    canvas = place(pixels, transform, pipeline.pad_value)
    if pipeline.jpeg_quality:
        canvas = jpeg_round_trip(canvas, pipeline.jpeg_quality)
    write_canvas(canvas, pipeline, table, out)


def jpeg_round_trip(canvas: np.ndarray, quality: int) -> np.ndarray:
    """Encode the canvas as a baseline 4:2:0 JPEG and decode it again: the lossy step some
    reference pipelines apply (open_nsfw's scores were calibrated on re-encoded crops), with
    libjpeg-turbo's settings that Pillow's `save(format="JPEG", quality=q)` uses."""
    data = simplejpeg.encode_jpeg(canvas, quality=quality, colorspace="RGB", colorsubsampling="420")
    return simplejpeg.decode_jpeg(data, colorspace="RGB")


def resize(pixels: np.ndarray, size: tuple[int, int], interpolation: str) -> np.ndarray:
    """Resize an RGB uint8 image to size = (width, height). `linear_antialias` is bilinear whose
    triangle filter widens with the shrink factor (Pillow's BILINEAR, torch's antialias=True),
    which PIL-based reference pipelines use; OpenCV's INTER_LINEAR samples 2x2 pixels whatever
    the factor."""
    if interpolation == "linear_antialias":
        from PIL import Image

        return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
    return cv2.resize(pixels, size, interpolation=CV2_INTERPOLATION[interpolation])


def _lut_into(source: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    result = cv2.LUT(source, table, dst=out)
    # OpenCV writes into `dst` when it matches; should it ever allocate instead, copy the result.
    if result.__array_interface__["data"][0] != out.__array_interface__["data"][0]:
        out[...] = result.reshape(out.shape)


def write_canvas(canvas: np.ndarray, pipeline: Pipeline, table: np.ndarray | None, out: np.ndarray) -> None:
    """RGB uint8 [H, W, 3] canvas -> the output slot in the pipeline's color order, layout, dtype."""
    order = (2, 1, 0) if pipeline.color == "BGR" else (0, 1, 2)
    if pipeline.layout in ("NHWC", "HWC"):
        if pipeline.color == "BGR":
            canvas = cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)
        if table is None:
            out[...] = canvas
        else:
            _lut_into(canvas, table.reshape(256, 1, 3), out)
        return
    plane = _scratch_plane(canvas.shape[0], canvas.shape[1])
    for channel, source in enumerate(order):
        if table is None:
            cv2.extractChannel(canvas, source, dst=out[channel])
        else:
            # A SIMD channel extract into a reused buffer, then the table: far cheaper than a
            # numpy HWC -> CHW transpose, which walks memory with a stride of 3.
            cv2.extractChannel(canvas, source, dst=plane)
            _lut_into(plane, np.ascontiguousarray(table[:, channel]), out[channel])


_scratch = threading.local()


def _scratch_plane(height: int, width: int) -> np.ndarray:
    """A uint8 [height, width] buffer owned by the calling thread, reused across calls (fresh
    allocations of this size are fresh pages, and page faults cost as much as the copy)."""
    plane: np.ndarray | None = getattr(_scratch, "plane", None)
    if plane is None or plane.shape != (height, width):
        plane = np.empty((height, width), dtype=np.uint8)
        _scratch.plane = plane
    return plane


def check_regions(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim == 3 and boxes.shape[1:] == (4, 2):
        boxes = boxes.reshape(-1, 8)
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 8):
        raise ValueError(
            f"boxes must be [N, 4] (x1, y1, x2, y2) or [N, 8] / [N, 4, 2] quadrilaterals, "
            f"got shape {boxes.shape}"
        )
    if not np.all(np.isfinite(boxes)):
        raise ValueError("boxes contain NaN or infinite coordinates")
    return boxes


def crop_regions(
    image: np.ndarray,
    boxes: np.ndarray,
    size: tuple[int, int],
    *,
    interpolation: str = "linear",
    pad_value: int = 0,
) -> np.ndarray:
    """Cut regions out of an [H, W, C] uint8 image and resize each to `size` = (width, height).

    `boxes` in image pixels (pixel i spans [i, i + 1]): [N, 4] corner boxes (x1, y1, x2, y2), or
    [N, 8] / [N, 4, 2] quadrilaterals (top-left, top-right, bottom-right, bottom-left), which are
    warped upright by a perspective transform (rotated text lines). Parts outside the image read as
    `pad_value`. Boxes narrower than a pixel are widened to one. Returns uint8 [N, height, width, C].
    ValueError on malformed boxes.
    """
    boxes = check_regions(boxes)
    width, height = size
    if width <= 0 or height <= 0:
        raise ValueError(f"crop size must be positive, got {size}")
    channels = image.shape[2] if image.ndim == 3 else 1
    crops = np.empty((len(boxes), height, width, channels), dtype=np.uint8)
    border = (pad_value,) * 4
    flag = CV2_INTERPOLATION["linear" if interpolation == "area" else interpolation]
    for index, box in enumerate(boxes):
        if box.shape[0] == 4:
            x1, y1, x2, y2 = box
            x2, y2 = max(x2, x1 + 1.0), max(y2, y1 + 1.0)
            if interpolation == "area":
                crop = _area_crop(image, (x1, y1, x2, y2), pad_value)
                crops[index] = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA).reshape(
                    crops[index].shape
                )
                continue
            step_x, step_y = (x2 - x1) / width, (y2 - y1) / height
            # Output pixel u (center u + 0.5) samples source x1 + (u + 0.5) * step; OpenCV puts pixel
            # centers on integers, hence the -0.5 on both sides.
            matrix = np.array(
                [[step_x, 0.0, x1 + 0.5 * step_x - 0.5], [0.0, step_y, y1 + 0.5 * step_y - 0.5]]
            )
            warped = cv2.warpAffine(
                image,
                matrix,
                (width, height),
                flags=flag | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=border,
            )
        else:
            target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32) - 0.5
            source = box.reshape(4, 2).astype(np.float32) - 0.5
            matrix = cv2.getPerspectiveTransform(target, source)
            warped = cv2.warpPerspective(
                image,
                matrix,
                (width, height),
                flags=flag | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=border,
            )
        crops[index] = warped.reshape(crops[index].shape)
    return crops


def crop_native(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """One region cut upright at its own size: width and height are the whole-pixel lengths of its
    longer opposite sides, sampled with bicubic interpolation and replicated borders. This is
    PP-OCR's `get_rotate_crop_image`; resizing the result to the model's input is a second step."""
    box = check_regions(box.reshape(1, -1))[0]
    if box.shape[0] == 4:
        x1, y1, x2, y2 = box
        box = np.array([x1, y1, x2, y1, x2, y2, x1, y2])
    quad = box.reshape(4, 2).astype(np.float32)
    width = max(1, int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3]))))
    height = max(1, int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2]))))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    return cv2.warpPerspective(
        image, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )


def _area_crop(image: np.ndarray, box: tuple[float, float, float, float], pad_value: int) -> np.ndarray:
    """The whole-pixel region covering `box`, padded where it leaves the image."""
    x1, y1 = int(np.floor(box[0])), int(np.floor(box[1]))
    x2, y2 = max(int(np.ceil(box[2])), x1 + 1), max(int(np.ceil(box[3])), y1 + 1)
    height, width = image.shape[:2]
    region = image[max(0, y1) : max(0, min(height, y2)), max(0, x1) : max(0, min(width, x2))]
    top, left = max(0, -y1), max(0, -x1)
    bottom = (y2 - y1) - top - region.shape[0]
    right = (x2 - x1) - left - region.shape[1]
    if region.size == 0:
        channels = image.shape[2] if image.ndim == 3 else 1
        return np.full((y2 - y1, x2 - x1, channels), pad_value, dtype=np.uint8)
    if top or left or bottom or right:
        return cv2.copyMakeBorder(
            region, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 4
        )
    return region
