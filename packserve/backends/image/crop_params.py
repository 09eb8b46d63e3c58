"""The crop_boxes-mode half of an image model's `parameters`: which inputs hold the image, the boxes
and the meta. Decode-mode parameters are in params.py; both share the value parsers of
param_values.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packserve.backends.image.param_values import parse_choice
from packserve.errors import ConfigError
from packserve.types import DataType

if TYPE_CHECKING:
    from packserve.model_spec import ModelSpec, TensorSpec


@dataclass(frozen=True, slots=True)
class CropInputs:
    image: str
    boxes: str
    image_meta: str | None
    image_color: str


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
