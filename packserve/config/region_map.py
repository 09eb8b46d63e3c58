"""`platform: "region_map"` parameters -> one frozen `RegionMapPlan`, parsed at config load; and
the load-time check of a region map against the ready models it calls.

A region map runs two models per request: its crop model (an image model in crop_boxes mode,
`backend: "image"`) cuts every region out of the image, then its target model runs on the crops as
batch rows. Both are ordinary models of the repository: batched by their own batchers, counted in
their own statistics, bounded by their own instance groups. Parameters (config `parameters`):

    model             target model (must batch: max_batch_size > 0)          required
    model_input       the target's input that takes the crops                its first input
    output_map        "OUT=target_out,..." region-map output <- target output   same names
    crop_model        the image model (mode crop_boxes) that cuts the regions  required
    crop_output       the crop model's output holding the crops               its only output
    image_input       region-map input holding the HxWx3 UINT8 image           "IMAGE"
                      (a leading batch dimension of 1 is accepted)
    boxes_input       region-map input holding [N,4] xyxy boxes or [N,8] quads  "BOXES"
    image_meta_input  optional [6] canvas transform of the image (the `decoded` output's `_meta`):
                      boxes then arrive in original pixels                     none

The crop model takes the region map's image, boxes and meta inputs under the same names. How
regions are cut (size, keep_ratio, crop_mode, expand, normalization, layout, dtype) is the crop
model's business: its per-output keys (docs/image-ops.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from packserve.errors import ConfigError
from packserve.model_spec import REGION_MAP_PLATFORM, ModelSpec

IMAGE_BACKEND = "image"
# Crop keys a region map took before the crops moved to its crop model: refused with a pointer.
MOVED_TO_CROP_MODEL = (
    "crop_size",
    "keep_ratio",
    "max_crop_width",
    "width_bucket",
    "pad_value",
    "color",
    "layout",
    "dtype",
    "scale",
    "mean",
    "std",
    "expand",
    "crop_mode",
)


@dataclass(frozen=True, slots=True)
class RegionMapPlan:
    name: str
    model: str
    model_input: str  # "" = the target's first input
    output_map: Mapping[str, str]  # region-map output -> target output
    crop_model: str
    crop_output: str  # "" = the crop model's only output
    image_input: str
    boxes_input: str
    image_meta_input: str  # "" = boxes are already in the image's pixels

    @property
    def where(self) -> str:
        return f"region_map model '{self.name}'"


def region_map_callees(spec: ModelSpec) -> tuple[str, ...]:
    """The models a region map calls (its crop model, then its target), from its parameters as
    given; nothing for any other model, whatever its parameters are called."""
    if spec.platform != REGION_MAP_PLATFORM:
        return ()
    names = (spec.parameters.get("crop_model", ""), spec.parameters.get("model", ""))
    return tuple(name for name in names if name)


def parse_region_map(spec: ModelSpec) -> RegionMapPlan:
    """The region map's parameters, checked against its own inputs and outputs; ConfigError
    naming the model and the parameter otherwise."""
    p = spec.parameters
    where = f"region_map model '{spec.name}'"
    if not p.get("model"):
        raise ConfigError(f"{where}: parameter 'model' (the per-region model) is required")
    moved = [key for key in MOVED_TO_CROP_MODEL if key in p]
    if moved:
        named = f" '{p['crop_model']}'" if p.get("crop_model") else ""
        raise ConfigError(
            f"{where}: parameters {moved} belong to its crop model{named}: the image model in "
            "crop_boxes mode named by parameter 'crop_model', which takes them as per-output keys "
            "(docs/image-ops.md, Region maps)"
        )
    if not p.get("crop_model"):
        raise ConfigError(
            f"{where}: parameter 'crop_model' (the image model, mode crop_boxes, that cuts the "
            "regions) is required"
        )
    try:
        output_map = (
            dict(pair.split("=", 1) for pair in p["output_map"].split(","))
            if p.get("output_map")
            else {o.name: o.name for o in spec.outputs}
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: bad parameter value: {exc}") from None
    plan = RegionMapPlan(
        name=spec.name,
        model=p["model"],
        model_input=p.get("model_input", ""),
        output_map={k.strip(): v.strip() for k, v in output_map.items()},
        crop_model=p["crop_model"],
        crop_output=p.get("crop_output", ""),
        image_input=p.get("image_input", "IMAGE"),
        boxes_input=p.get("boxes_input", "BOXES"),
        image_meta_input=p.get("image_meta_input", ""),
    )
    for name in (plan.image_input, plan.boxes_input, plan.image_meta_input):
        if name and spec.input(name) is None:
            raise ConfigError(f"{where}: has no input '{name}'")
    for name in plan.output_map:
        if spec.output(name) is None:
            raise ConfigError(f"{where}: output_map names unknown output '{name}'")
    return plan


def validate_region_map(plan: RegionMapPlan, spec: ModelSpec, models: Mapping[str, ModelSpec]) -> None:
    """Load-time check against the ready models: the target exists, batches and has the tensors;
    the crop model is an image model that takes our inputs and gives rows the target takes."""
    target = models.get(plan.model)
    where = plan.where
    if target is None:
        raise ConfigError(f"{where}: target model '{plan.model}' is not loaded")
    if target.max_batch_size <= 0:
        raise ConfigError(f"{where}: target model '{plan.model}' must batch (max_batch_size > 0)")
    if plan.model_input and target.input(plan.model_input) is None:
        raise ConfigError(f"{where}: target model '{plan.model}' has no input '{plan.model_input}'")
    for ours, theirs in plan.output_map.items():
        out = target.output(theirs)
        if out is None:
            raise ConfigError(f"{where}: target model '{plan.model}' has no output '{theirs}'")
        mine = spec.output(ours)
        if mine is not None and out.datatype is not mine.datatype:
            raise ConfigError(
                f"{where}: output '{ours}' is {mine.datatype.wire_name} "
                f"but target output '{theirs}' is {out.datatype.wire_name}"
            )
    _check_crop_model(plan, models.get(plan.crop_model), target)


def crop_output_name(plan: RegionMapPlan, crop: ModelSpec) -> str:
    """The crop model's output holding the crops."""
    return plan.crop_output or (crop.outputs[0].name if len(crop.outputs) == 1 else "")


def _check_crop_model(plan: RegionMapPlan, crop: ModelSpec | None, target: ModelSpec) -> None:
    where, name = plan.where, plan.crop_model
    if crop is None:
        raise ConfigError(f"{where}: crop model '{name}' is not loaded")
    mode = crop.parameters.get("mode", "").strip().lower()
    if crop.backend != IMAGE_BACKEND or mode != "crop_boxes":
        raise ConfigError(
            f"{where}: crop model '{name}' must be an image model in crop_boxes mode "
            f"(backend: \"image\", parameter mode: crop_boxes), got backend '{crop.backend}' mode '{mode}'"
        )
    for ours in (plan.image_input, plan.boxes_input, plan.image_meta_input):
        if ours and crop.input(ours) is None:
            raise ConfigError(
                f"{where}: crop model '{name}' has no input '{ours}' (it takes the region map's "
                f"inputs under the same names; it has {[t.name for t in crop.inputs]})"
            )
    output_name = crop_output_name(plan, crop)
    output = crop.output(output_name) if output_name else None
    if output is None:
        raise ConfigError(
            f"{where}: crop model '{name}' has no output '{plan.crop_output}'"
            if plan.crop_output
            else f"{where}: crop model '{name}' has {len(crop.outputs)} outputs; name one in 'crop_output'"
        )
    target_input = target.input(plan.model_input) if plan.model_input else target.inputs[0]
    if target_input is None:
        return
    if output.datatype is not target_input.datatype:
        raise ConfigError(
            f"{where}: crop model '{name}' output '{output.name}' is {output.datatype.wire_name} "
            f"but target input '{target_input.name}' is {target_input.datatype.wire_name}"
        )
    rows, takes = list(output.dims[1:]), list(target_input.dims)
    fits = len(rows) == len(takes) and all(t == -1 or r == t for r, t in zip(rows, takes, strict=True))
    if not fits:
        raise ConfigError(
            f"{where}: crop model '{name}' output '{output.name}' gives crops of dims {rows} that "
            f"target input '{target_input.name}' {takes} does not take (a variable width (-1) needs "
            "a variable width in the target)"
        )
