"""The crop_boxes-mode half of an image model's `parameters`: which inputs hold the image, the boxes
and the meta, and how each output cuts its regions (keep_ratio, variable widths, native crops,
expand). Decode-mode parameters are in params.py; both share the value parsers of param_values.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packserve.backends.image.param_values import (
    bad_value,
    parse_bool,
    parse_choice,
    parse_int,
    parse_number,
)
from packserve.errors import ConfigError
from packserve.types import DataType

if TYPE_CHECKING:
    from packserve.model_spec import ModelSpec, TensorSpec

# Per-output keys that only crop_boxes mode takes.
CROP_OUTPUT_KEYS = ("keep_ratio", "min_width", "max_width", "width_bucket", "crop_mode", "expand")
CROP_MODES = ("direct", "native")
DEFAULT_WIDTH_BUCKET = 32
MAX_CROP_SIDE = 1 << 16


@dataclass(frozen=True, slots=True)
class CropInputs:
    image: str
    boxes: str
    image_meta: str | None
    image_color: str


@dataclass(frozen=True, slots=True)
class RegionCut:
    """How one crop_boxes output cuts its regions. The crop's height is the output's H; its width
    is the output's W, or with a variable W (-1) from min_width (the pipeline's width) up to
    max_width."""

    keep_ratio: bool  # resize to the full height keeping the aspect ratio, pad the right side
    max_width: int  # the widest crop: the pipeline's width unless the output's width is variable
    width_bucket: int  # 0: a fixed width; else a request's common crop width is a multiple of it
    native: bool  # crop_mode native: cut at the region's own size first, then resize (PP-OCR)
    expand: float  # grow each region by this factor around its centre before cutting

    @property
    def variable_width(self) -> bool:
        return self.width_bucket > 0


def region_cut(
    model: str, name: str, width: int, keys: Mapping[str, str], interpolation_given: bool
) -> tuple[RegionCut, int]:
    """The cut of crop_boxes output `name` whose dims give `width` (-1: variable), and the crop
    width to use as the pipeline's width (the narrowest one for a variable width)."""

    def key(k: str) -> str:
        return f"{name}.{k}"

    keep_ratio = parse_bool(model, key("keep_ratio"), keys.get("keep_ratio", "false"))
    native = parse_choice(model, key("crop_mode"), keys.get("crop_mode", "direct"), CROP_MODES) == "native"
    if native and interpolation_given:
        raise ConfigError(
            f"image model '{model}': output '{name}' has crop_mode native, which cuts with bicubic "
            f"and resizes with linear interpolation; '{key('interpolation')}' does not apply"
        )
    expand = parse_number(model, key("expand"), keys.get("expand", "1"))
    if expand <= 0:
        raise bad_value(model, key("expand"), "a positive number (1: the region as given)", keys["expand"])
    sizing = [k for k in ("min_width", "max_width", "width_bucket") if k in keys]
    if width > 0:
        if sizing:
            raise ConfigError(
                f"image model '{model}': parameter '{key(sizing[0])}' applies to an output whose "
                f"width is variable (-1), output '{name}' is {width} wide"
            )
        return RegionCut(keep_ratio, width, 0, native, expand), width
    if not keep_ratio or "min_width" not in keys or "max_width" not in keys:
        raise ConfigError(
            f"image model '{model}': output '{name}' has a variable width (-1), which needs "
            f"'{key('keep_ratio')}: true' and '{key('min_width')}' and '{key('max_width')}' "
            "(each crop keeps its aspect ratio between the two widths)"
        )
    narrowest = parse_int(model, key("min_width"), keys["min_width"], 1, MAX_CROP_SIDE)
    widest = parse_int(model, key("max_width"), keys["max_width"], narrowest, MAX_CROP_SIDE)
    bucket = parse_int(
        model, key("width_bucket"), keys.get("width_bucket", str(DEFAULT_WIDTH_BUCKET)), 1, MAX_CROP_SIDE
    )
    return RegionCut(keep_ratio, widest, bucket, native, expand), narrowest


def refuse_crop_keys(model: str, name: str, keys: Mapping[str, str]) -> None:
    """A decode-mode output given a key that only crop_boxes outputs take."""
    given = [k for k in CROP_OUTPUT_KEYS if k in keys]
    if given:
        raise ConfigError(
            f"image model '{model}': parameter '{name}.{given[0]}' applies to crop_boxes mode only"
        )


def _tensor(model: str, spec: ModelSpec, name: str, what: str) -> TensorSpec:
    tensor = spec.input(name)
    if tensor is None:
        raise ConfigError(
            f"image model '{model}': crop_boxes mode needs a {what} input named '{name}' "
            f"(inputs: {[t.name for t in spec.inputs]})"
        )
    return tensor


def crop_inputs(model: str, spec: ModelSpec, keys: Mapping[str, str]) -> CropInputs:
    image = _tensor(model, spec, keys.get("image_input", "IMAGE"), "UINT8 [H, W, 3] image")
    boxes = _tensor(model, spec, keys.get("boxes_input", "BOXES"), "FP32 [-1, 4] or [-1, 8] boxes")
    if image.datatype is not DataType.UINT8 or len(image.dims) != 3 or image.dims[2] not in (3, -1):
        raise ConfigError(
            f"image model '{model}': input '{image.name}' must be UINT8 [H, W, 3], "
            f"got {image.datatype.wire_name} {list(image.dims)}"
        )
    if boxes.datatype is not DataType.FP32 or len(boxes.dims) != 2 or boxes.dims[1] not in (4, 8, -1):
        raise ConfigError(
            f"image model '{model}': input '{boxes.name}' must be FP32 [-1, 4] or [-1, 8], "
            f"got {boxes.datatype.wire_name} {list(boxes.dims)}"
        )
    meta = spec.input(keys.get("image_meta_input", "IMAGE_META"))
    if meta is not None and (meta.datatype is not DataType.FP32 or list(meta.dims) != [6]):
        raise ConfigError(
            f"image model '{model}': input '{meta.name}' must be FP32 [6], "
            f"got {meta.datatype.wire_name} {list(meta.dims)}"
        )
    extra = {t.name for t in spec.inputs} - {image.name, boxes.name} - ({meta.name} if meta else set())
    if extra:
        raise ConfigError(f"image model '{model}': unexpected inputs {sorted(extra)} in crop_boxes mode")
    color = parse_choice(model, "image_color", keys.get("image_color", "RGB"), ("RGB", "BGR"))
    return CropInputs(image.name, boxes.name, meta.name if meta else None, color)
