"""Config `parameters` of an image model -> one frozen `ImagePlan` (parse and validate, once, at load).

The schema is documented in packserve/backends/image/__init__.py and docs/image-ops.md. Every error
is a ConfigError naming the model, the parameter, what was expected and what was found. What only
crop_boxes mode takes (its inputs, how regions are cut) is parsed in crop_params.py.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packserve.backends.image.crop_params import (
    CROP_OUTPUT_KEYS,
    CropInputs,
    RegionCut,
    crop_inputs,
    refuse_crop_keys,
    region_cut,
)
from packserve.backends.image.param_values import (
    bad_value,
    parse_bool,
    parse_choice,
    parse_int,
    parse_number,
    parse_triple,
)
from packserve.errors import ConfigError
from packserve.types import DataType

if TYPE_CHECKING:
    from collections.abc import Mapping

    from packserve.model_spec import ModelSpec, TensorSpec

DECODE_OPS = ("letterbox", "resize", "center_crop", "shorter_side", "decoded")
INTERPOLATIONS = ("nearest", "linear", "linear_antialias", "cubic", "area", "lanczos")
OUTPUT_DTYPES = (DataType.FP32, DataType.FP16, DataType.UINT8)
GLOBAL_KEYS = (
    "mode",
    "max_pixels",
    "exif_orientation",
    "dct_scaling",
    "color",
    "threads",
    "image_input",
    "boxes_input",
    "image_meta_input",
    "image_color",
    "alpha_background",
    "min_size",
    "max_aspect_ratio",
)
OUTPUT_KEYS = (
    "op",
    "layout",
    "color",
    "interpolation",
    "pad_value",
    "align",
    "resize_shorter",
    "shorter",
    "allow_upscale",
    "max_upscale",
    "stretch",
    "jpeg_quality",
    "scale",
    "mean",
    "std",
    *CROP_OUTPUT_KEYS,
)
META_SUFFIX = "_meta"
DEFAULT_MAX_PIXELS = 50_000_000
DEFAULT_CROP_RATIO = 0.875  # ImageNet convention: resize to 256, crop 224


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    max_pixels: int = DEFAULT_MAX_PIXELS
    exif_orientation: bool = True
    dct_scaling: bool = True
    # Pixel value (0..255) transparent pixels are composited onto; None drops the alpha channel.
    alpha_background: int | None = 255
    min_size: int = 1  # smallest width and height accepted, in pixels
    max_aspect_ratio: float = 0.0  # largest longer/shorter side ratio accepted; 0: any


@dataclass(frozen=True, slots=True)
class Normalization:
    """`out = (pixel * scale - mean[c]) / std[c]`, on 0..255 pixels; identity for UINT8 outputs."""

    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def gain_and_bias(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per channel `out = pixel * gain + bias`, the one fused multiply-add."""
        gain = tuple(self.scale / s for s in self.std)
        bias = tuple(-m / s for m, s in zip(self.mean, self.std, strict=True))
        return gain, bias


@dataclass(frozen=True, slots=True)
class Pipeline:
    """One output tensor: op + size + normalization + layout + dtype (+ its optional meta output)."""

    name: str
    op: str  # one of DECODE_OPS, or "crop" in crop_boxes mode
    width: int
    height: int
    layout: str  # "NCHW" | "NHWC" ("decoded" is always HWC)
    color: str  # "RGB" | "BGR"
    dtype: DataType
    interpolation: str
    pad_value: int
    center: bool  # letterbox: center the image (else top-left)
    resize_shorter: int  # center_crop only
    shorter: int  # shorter_side only
    max_upscale: float  # letterbox / shorter_side: the largest enlargement allowed (inf: any)
    stretch: bool  # center_crop: resize to resize_shorter x resize_shorter (aspect not kept) first
    jpeg_quality: int  # 0: off; else the canvas takes a JPEG round trip at this quality
    normalization: Normalization | None  # None: raw 0..255 pixels (UINT8)
    meta_name: str | None  # "<name>_meta" when the config declares it
    region: RegionCut | None = None  # crop_boxes mode: how regions are cut (None in decode mode)


@dataclass(frozen=True, slots=True)
class ImagePlan:
    model: str
    mode: str  # "decode" | "crop_boxes"
    batching: bool
    input_name: str  # the BYTES input (decode mode)
    decode: DecodeOptions
    pipelines: tuple[Pipeline, ...]
    crop: CropInputs | None
    threads: int


def _canvas(model: str, output: TensorSpec, layout: str, crops: bool) -> tuple[int, int]:
    """(width, height) read from the output dims. Crop outputs have a leading crop-count dim and
    may have a variable width (-1: each request's crops keep their aspect ratio)."""
    channels_last = layout in ("NHWC", "HWC")
    leading = 1 if crops else 0
    dims = output.dims[leading:]
    if len(output.dims) == 3 + leading:
        height, width, channels = dims if channels_last else (dims[1], dims[2], dims[0])
        if channels == 3 and height > 0 and (width > 0 or (crops and width == -1)):
            return int(width), int(height)
    expected = ("[-1, " if leading else "[") + ("H, W, 3]" if channels_last else "3, H, W]")
    variable = " (W may be -1: crops of variable width)" if crops else ""
    raise ConfigError(
        f"image model '{model}': output '{output.name}' ({layout}) must have dims {expected} "
        f"with fixed H and W{variable}, got {list(output.dims)}"
    )


def _pipeline(
    model: str, output: TensorSpec, keys: Mapping[str, str], defaults: Mapping[str, str], mode: str
) -> Pipeline:
    name = output.name

    def key(k: str) -> str:
        return f"{name}.{k}"

    if mode == "crop_boxes":
        op = parse_choice(model, key("op"), keys.get("op", "crop"), ("crop",))
    else:
        if "op" not in keys:
            raise ConfigError(
                f"image model '{model}': output '{name}' needs parameter '{name}.op' "
                f"(one of {'/'.join(DECODE_OPS)}) or must be named '<output>{META_SUFFIX}'"
            )
        op = parse_choice(model, key("op"), keys["op"], DECODE_OPS)
    if output.datatype not in OUTPUT_DTYPES:
        raise ConfigError(
            f"image model '{model}': output '{name}' must be FP32, FP16 or UINT8, "
            f"got {output.datatype.wire_name}"
        )
    if op == "decoded":
        if output.datatype is not DataType.UINT8 or "layout" in keys:
            raise ConfigError(
                f"image model '{model}': output '{name}' (op decoded) is a UINT8 [H, W, 3] "
                f"image; got {output.datatype.wire_name} and layout {keys.get('layout', 'HWC')}"
            )
        layout = "HWC"
    else:
        layout = parse_choice(model, key("layout"), keys.get("layout", "NCHW"), ("NCHW", "NHWC"))
    width, height = _canvas(model, output, layout, mode == "crop_boxes")
    region = None
    if mode == "crop_boxes":
        region, width = region_cut(model, name, width, keys, "interpolation" in keys)
    else:
        refuse_crop_keys(model, name, keys)
    normalization = None
    if output.datatype is DataType.UINT8:
        extra = [k for k in ("scale", "mean", "std") if k in keys]
        if extra:
            raise ConfigError(
                f"image model '{model}': output '{name}' is UINT8 (raw pixels) and takes no "
                f"normalization, got parameters {[key(k) for k in extra]}"
            )
    else:
        normalization = Normalization(
            scale=parse_number(model, key("scale"), keys.get("scale", "1/255")),
            mean=parse_triple(model, key("mean"), keys.get("mean", "0"), positive=False),
            std=parse_triple(model, key("std"), keys.get("std", "1"), positive=True),
        )
    shorter = 0
    if op == "shorter_side":
        if "shorter" not in keys:
            raise ConfigError(
                f"image model '{model}': output '{name}' (op shorter_side) needs '{key('shorter')}'"
            )
        shorter = parse_int(model, key("shorter"), keys["shorter"], 1, 1 << 16)
    default_shorter = str(round(min(width, height) / DEFAULT_CROP_RATIO))
    max_upscale = _max_upscale(model, name, op, keys)
    return Pipeline(
        name=name,
        op=op,
        width=width,
        height=height,
        layout=layout,
        color=parse_choice(
            model, key("color"), keys.get("color", defaults.get("color", "RGB")), ("RGB", "BGR")
        ),
        dtype=output.datatype,
        interpolation=parse_choice(
            model, key("interpolation"), keys.get("interpolation", "linear"), INTERPOLATIONS
        ),
        pad_value=parse_int(
            model, key("pad_value"), keys.get("pad_value", "114" if op == "letterbox" else "0"), 0, 255
        ),
        center=parse_choice(model, key("align"), keys.get("align", "center"), ("center", "top_left"))
        == "center",
        resize_shorter=parse_int(
            model, key("resize_shorter"), keys.get("resize_shorter", default_shorter), 1, 1 << 16
        ),
        shorter=shorter,
        max_upscale=max_upscale,
        stretch=_stretch(model, name, op, keys),
        jpeg_quality=parse_int(model, key("jpeg_quality"), keys.get("jpeg_quality", "0"), 0, 100),
        normalization=normalization,
        meta_name=None,
        region=region,
    )


def _max_upscale(model: str, name: str, op: str, keys: Mapping[str, str]) -> float:
    """`allow_upscale: false` is `max_upscale: 1`; both only mean something where the op may
    enlarge the image to fit its canvas (letterbox, shorter_side)."""
    given = [k for k in ("allow_upscale", "max_upscale") if k in keys]
    if not given:
        return float("inf")
    if op not in ("letterbox", "shorter_side"):
        raise ConfigError(
            f"image model '{model}': parameter '{name}.{given[0]}' applies to letterbox and "
            f"shorter_side only, output '{name}' is {op}"
        )
    if len(given) == 2:
        raise ConfigError(
            f"image model '{model}': give '{name}.allow_upscale' or '{name}.max_upscale', not both"
        )
    if given[0] == "allow_upscale":
        return float("inf") if parse_bool(model, f"{name}.allow_upscale", keys["allow_upscale"]) else 1.0
    limit = parse_number(model, f"{name}.max_upscale", keys["max_upscale"])
    if limit < 1.0:
        raise bad_value(model, f"{name}.max_upscale", "a number >= 1 (1: never enlarge)", keys["max_upscale"])
    return limit


def _stretch(model: str, name: str, op: str, keys: Mapping[str, str]) -> bool:
    if "stretch" not in keys:
        return False
    if op != "center_crop":
        raise ConfigError(f"image model '{model}': parameter '{name}.stretch' applies to center_crop only")
    return parse_bool(model, f"{name}.stretch", keys["stretch"])


def _aspect(model: str, value: str) -> float:
    ratio = parse_number(model, "max_aspect_ratio", value)
    if ratio != 0 and ratio < 1:
        raise bad_value(model, "max_aspect_ratio", "0 (any) or a number >= 1", value)
    return ratio


def _alpha_background(model: str, value: str) -> int | None:
    if value.strip().lower() == "none":
        return None
    return parse_int(model, "alpha_background", value, 0, 255)


def _split_parameters(model: str, spec: ModelSpec) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    output_names = {o.name for o in spec.outputs}
    global_keys: dict[str, str] = {}
    per_output: dict[str, dict[str, str]] = {}
    for full_key, value in spec.parameters.items():
        target, dot, sub = full_key.rpartition(".")
        if not dot:
            if full_key not in GLOBAL_KEYS:
                raise ConfigError(
                    f"image model '{model}': unknown parameter '{full_key}' "
                    f"(known: {', '.join(GLOBAL_KEYS)}, or '<output>.<{'|'.join(OUTPUT_KEYS)}>')"
                )
            global_keys[full_key] = value
        elif target not in output_names or sub not in OUTPUT_KEYS:
            raise ConfigError(
                f"image model '{model}': parameter '{full_key}' names no output option "
                f"(outputs: {sorted(output_names)}; options: {', '.join(OUTPUT_KEYS)})"
            )
        else:
            per_output.setdefault(target, {})[sub] = value
    return global_keys, per_output


def _decode_input(model: str, spec: ModelSpec) -> str:
    if (
        len(spec.inputs) != 1
        or spec.inputs[0].datatype is not DataType.BYTES
        or list(spec.inputs[0].dims) != [1]
    ):
        got = [(t.name, t.datatype.wire_name, list(t.dims)) for t in spec.inputs]
        raise ConfigError(
            f"image model '{model}': decode mode needs exactly one BYTES input with dims [1] "
            f"(one encoded image per batch row), got {got}"
        )
    return spec.inputs[0].name


def parse_plan(spec: ModelSpec) -> ImagePlan:
    """Validate an image model's config into an ImagePlan; ConfigError on anything wrong."""
    model = spec.name
    keys, per_output = _split_parameters(model, spec)
    mode = parse_choice(model, "mode", keys.get("mode", "decode"), ("decode", "crop_boxes"))
    names = {o.name for o in spec.outputs}
    pipelines: dict[str, Pipeline] = {}
    meta_for: dict[str, str] = {}
    for output in spec.outputs:
        base = output.name[: -len(META_SUFFIX)]
        if output.name.endswith(META_SUFFIX) and base in names and output.name not in per_output:
            if mode == "crop_boxes" or output.datatype is not DataType.FP32 or list(output.dims) != [6]:
                raise ConfigError(
                    f"image model '{model}': meta output '{output.name}' must be FP32 [6] "
                    f"(decode mode only), got {output.datatype.wire_name} {list(output.dims)}"
                )
            meta_for[base] = output.name
            continue
        pipelines[output.name] = _pipeline(model, output, per_output.get(output.name, {}), keys, mode)
    if not pipelines:
        raise ConfigError(f"image model '{model}': no image output configured")
    for base, meta_name in meta_for.items():
        if base not in pipelines:
            raise ConfigError(f"image model '{model}': meta output '{meta_name}' has no pipeline '{base}'")
        pipelines[base] = _with_meta(pipelines[base], meta_name)
    cpu = os.cpu_count() or 1
    return ImagePlan(
        model=model,
        mode=mode,
        batching=spec.batching,
        input_name=_decode_input(model, spec) if mode == "decode" else "",
        decode=DecodeOptions(
            max_pixels=parse_int(
                model, "max_pixels", keys.get("max_pixels", str(DEFAULT_MAX_PIXELS)), 1, 1 << 40
            ),
            exif_orientation=parse_bool(model, "exif_orientation", keys.get("exif_orientation", "true")),
            dct_scaling=parse_bool(model, "dct_scaling", keys.get("dct_scaling", "true")),
            alpha_background=_alpha_background(model, keys.get("alpha_background", "255")),
            min_size=parse_int(model, "min_size", keys.get("min_size", "1"), 1, 1 << 16),
            max_aspect_ratio=_aspect(model, keys.get("max_aspect_ratio", "0")),
        ),
        pipelines=tuple(pipelines.values()),
        crop=crop_inputs(model, spec, keys) if mode == "crop_boxes" else None,
        threads=parse_int(model, "threads", keys.get("threads", str(min(4, cpu))), 1, 256),
    )


def _with_meta(pipeline: Pipeline, meta_name: str) -> Pipeline:
    return dataclasses.replace(pipeline, meta_name=meta_name)
