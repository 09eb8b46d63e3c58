"""Where a source image lands in an output canvas: one geometry shared by the CPU and GPU paths.

Every geometric op is "resize the whole source to (resize_w, resize_h), then put its origin at
(offset_x, offset_y) of a (dst_w, dst_h) canvas": a positive offset pads (letterbox), a negative one
crops (center crop). A point maps forward as `x_out = x_src * scale_x + offset_x`, which is what the
`<output>_meta` tensor records so that boxes found on the canvas map back to the original image.
Pure functions on plain numbers and numpy arrays; no decoding, no OpenCV, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from packserve.backends.image.params import Pipeline

# Layout of the FP32 [6] meta tensor written next to each output.
META_SIZE = 6
META_FIELDS = ("scale_x", "scale_y", "offset_x", "offset_y", "source_width", "source_height")


@dataclass(frozen=True, slots=True)
class Transform:
    source_width: int  # the original image, after EXIF orientation, before any DCT downscale
    source_height: int
    resize_width: int  # the whole source is resized to this size ...
    resize_height: int
    offset_x: int  # ... and its top-left corner put here on the canvas (negative: cropped off)
    offset_y: int
    canvas_width: int
    canvas_height: int

    @property
    def scale_x(self) -> float:
        return self.resize_width / self.source_width

    @property
    def scale_y(self) -> float:
        return self.resize_height / self.source_height

    def meta(self) -> np.ndarray:
        """The FP32 [6] meta tensor: scale_x, scale_y, offset_x, offset_y, source_w, source_h."""
        return np.array(
            [self.scale_x, self.scale_y, self.offset_x, self.offset_y, self.source_width, self.source_height],
            dtype=np.float32,
        )


def _resized(src: int, scale: float, limit: int | None = None) -> int:
    size = max(1, round(src * scale))
    return min(size, limit) if limit is not None else size


def letterbox_geometry(
    src_w: int,
    src_h: int,
    dst_w: int,
    dst_h: int,
    *,
    center: bool = True,
    max_upscale: float = float("inf"),
) -> Transform:
    """Fit the source inside the canvas keeping its aspect ratio; pad the rest (centered or at the
    top-left). The scale never exceeds `max_upscale` (1 for the config's `allow_upscale: false`), so a
    thumbnail is not blown up into something a detector mistakes for an object. The recorded
    scale is the exact ratio of the resized to the source size."""
    scale = min(dst_w / src_w, dst_h / src_h, max_upscale)
    new_w = _resized(src_w, scale, dst_w)
    new_h = _resized(src_h, scale, dst_h)
    offset_x = (dst_w - new_w) // 2 if center else 0
    offset_y = (dst_h - new_h) // 2 if center else 0
    return Transform(src_w, src_h, new_w, new_h, offset_x, offset_y, dst_w, dst_h)


def resize_geometry(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Transform:
    """Stretch the source to the canvas (aspect ratio not kept)."""
    return Transform(src_w, src_h, dst_w, dst_h, 0, 0, dst_w, dst_h)


def center_crop_geometry(
    src_w: int, src_h: int, dst_w: int, dst_h: int, resize_shorter: int, stretch: bool = False
) -> Transform:
    """Resize so the shorter side is `resize_shorter`, then crop the canvas from the center. With
    `stretch`, both sides are resized to `resize_shorter` (aspect ratio not kept, as open_nsfw's
    reference squashes every image to 256 x 256) before the crop."""
    if stretch:
        side_w, side_h = max(resize_shorter, dst_w), max(resize_shorter, dst_h)
        return Transform(
            src_w, src_h, side_w, side_h, -((side_w - dst_w) // 2), -((side_h - dst_h) // 2), dst_w, dst_h
        )
    scale = resize_shorter / min(src_w, src_h)
    # The resized image must cover the canvas, or the crop would include padding.
    scale = max(scale, dst_w / src_w, dst_h / src_h)
    new_w = max(_resized(src_w, scale), dst_w)
    new_h = max(_resized(src_h, scale), dst_h)
    return Transform(
        src_w, src_h, new_w, new_h, -((new_w - dst_w) // 2), -((new_h - dst_h) // 2), dst_w, dst_h
    )


def shorter_side_geometry(
    src_w: int, src_h: int, dst_w: int, dst_h: int, shorter: int, max_upscale: float = float("inf")
) -> Transform:
    """Resize so the shorter side is `shorter` unless the result would overflow the canvas (then fit
    it), and place it at the top-left of the canvas: the detectron-style "min size, max size"."""
    scale = min(shorter / min(src_w, src_h), dst_w / src_w, dst_h / src_h, max_upscale)
    return Transform(
        src_w, src_h, _resized(src_w, scale, dst_w), _resized(src_h, scale, dst_h), 0, 0, dst_w, dst_h
    )


def _check_meta(meta: np.ndarray) -> np.ndarray:
    meta = np.asarray(meta, dtype=np.float64)
    if meta.shape[-1:] != (META_SIZE,):
        raise ValueError(
            f"meta must have {META_SIZE} values ({', '.join(META_FIELDS)}), got shape {meta.shape}"
        )
    if np.any(meta[..., 0:2] <= 0):
        raise ValueError("meta scale_x and scale_y must be positive")
    return meta


def map_boxes_to_original(boxes: np.ndarray, meta: np.ndarray, *, clip: bool = True) -> np.ndarray:
    """Undo a canvas transform: boxes found on the model input -> original image pixels.

    `boxes` is [..., 2k] with interleaved x, y coordinates: [N, 4] corner boxes (x1, y1, x2, y2) or
    [N, 8] quadrilaterals. `meta` is one [6] meta tensor (as written by a letterbox, resize, crop or
    decoded output). Coordinates are clipped to the original image unless `clip` is False.
    """
    meta = _check_meta(meta)
    out = np.array(boxes, dtype=np.float32, copy=True)
    if out.shape[-1] % 2:
        raise ValueError(f"boxes must end in an even number of coordinates, got shape {out.shape}")
    out[..., 0::2] = (out[..., 0::2] - meta[2]) / meta[0]
    out[..., 1::2] = (out[..., 1::2] - meta[3]) / meta[1]
    if clip:
        np.clip(out[..., 0::2], 0.0, meta[4], out=out[..., 0::2])
        np.clip(out[..., 1::2], 0.0, meta[5], out=out[..., 1::2])
    return out


def map_boxes_to_canvas(boxes: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """The forward transform: original image pixels -> canvas pixels (inverse of the above)."""
    meta = _check_meta(meta)
    out = np.array(boxes, dtype=np.float32, copy=True)
    if out.shape[-1] % 2:
        raise ValueError(f"boxes must end in an even number of coordinates, got shape {out.shape}")
    out[..., 0::2] = out[..., 0::2] * meta[0] + meta[2]
    out[..., 1::2] = out[..., 1::2] * meta[1] + meta[3]
    return out


def transform_for(pipeline: Pipeline, src_w: int, src_h: int) -> Transform:
    """The transform an output pipeline applies to an upright source of src_w x src_h."""
    w, h = pipeline.width, pipeline.height
    if pipeline.op == "letterbox":
        return letterbox_geometry(
            src_w, src_h, w, h, center=pipeline.center, max_upscale=pipeline.max_upscale
        )
    if pipeline.op == "resize":
        return resize_geometry(src_w, src_h, w, h)
    if pipeline.op == "center_crop":
        return center_crop_geometry(src_w, src_h, w, h, pipeline.resize_shorter, pipeline.stretch)
    if pipeline.op == "shorter_side":
        return shorter_side_geometry(src_w, src_h, w, h, pipeline.shorter, pipeline.max_upscale)
    if pipeline.op == "decoded":  # the image itself, shrunk only when it exceeds the canvas
        return letterbox_geometry(src_w, src_h, w, h, center=False, max_upscale=1.0)
    raise ValueError(f"op '{pipeline.op}' has no source geometry")
