"""Image operations as built-in models (config `backend: "image"`): encoded bytes in, tensors out.

A model is configured entirely by its inputs, outputs and string `parameters` (full reference with
examples in docs/image-ops.md).

decode mode (default): one BYTES input with dims [1] (one encoded image per batch row). Each output
is a pipeline applied to the same decoded image, so one decode feeds several sizes in one step:

    global      mode=decode|crop_boxes, max_pixels=50000000 (checked from the header before
                decoding), exif_orientation=true, dct_scaling=true (JPEG DCT-domain downscale when
                every output needs <= 1/2 of the source), color=RGB|BGR (default of every output),
                threads=min(4, cores) (pool that decodes a batch's rows in parallel)
    <OUT>.op    letterbox | resize | center_crop | shorter_side | decoded
    <OUT>.layout NCHW (dims [3, H, W]) | NHWC (dims [H, W, 3]); size comes from the output dims
    <OUT>.color RGB | BGR;  <OUT>.interpolation nearest | linear | cubic | area
    <OUT>.pad_value 0..255 (letterbox default 114);  <OUT>.align center | top_left (letterbox)
    <OUT>.resize_shorter (center_crop; default min(W, H) / 0.875);  <OUT>.shorter (shorter_side)
    <OUT>.scale (default 1/255), <OUT>.mean, <OUT>.std (1 or 3 values, output channel order):
                out = (pixel * scale - mean) / std; dtype = the output's datatype FP32|FP16|UINT8
                (UINT8 = raw pixels, no normalization)
    <OUT>_meta  optional FP32 [6] output: scale_x, scale_y, offset_x, offset_y, source_w, source_h,
                with canvas = source * scale + offset; see `map_boxes_to_original`.

`op: decoded` outputs the upright image itself as UINT8 [H, W, 3], top-left, zero padded to the
dims (shrunk to fit only if larger); with its `_meta` it feeds a crop_boxes model.

crop_boxes mode: inputs IMAGE UINT8 [H, W, 3], BOXES FP32 [-1, 4] (x1, y1, x2, y2) or [-1, 8]
(quadrilaterals), optional IMAGE_META FP32 [6] (then boxes are in original-image pixels); names
set by image_input / boxes_input / image_meta_input, image_color=RGB|BGR. Each output has dims
[-1, 3, H, W] or [-1, H, W, 3] and the per-output keys above (op defaults to crop), plus how its
regions are cut: <OUT>.expand (grow around the centre, 1), <OUT>.crop_mode direct | native (cut at
the region's own size, then resize, as PP-OCR), <OUT>.keep_ratio (full height, ratio kept, padded
right); a W of -1 takes <OUT>.min_width / <OUT>.max_width / <OUT>.width_bucket (crops of one request
share the width of the widest). A region_map model calls such a model to cut its crops.

Instances of kind KIND_GPU decode with nvjpeg (torchvision) and keep outputs as CUDA tensors.
"""

from packserve.backends.image.cpu_ops import crop_regions
from packserve.backends.image.geometry import (
    META_FIELDS,
    Transform,
    center_crop_geometry,
    letterbox_geometry,
    map_boxes_to_canvas,
    map_boxes_to_original,
    resize_geometry,
    shorter_side_geometry,
)
from packserve.backends.image.model import ImageModel
from packserve.backends.image.params import ImagePlan, parse_plan

__all__ = [
    "META_FIELDS",
    "ImageModel",
    "ImagePlan",
    "Transform",
    "center_crop_geometry",
    "crop_regions",
    "letterbox_geometry",
    "map_boxes_to_canvas",
    "map_boxes_to_original",
    "parse_plan",
    "resize_geometry",
    "shorter_side_geometry",
]
