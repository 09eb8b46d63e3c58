"""`platform: "region_map"`: run a model once per region of an image, batched across requests.

packserve's extension to Triton's ensembles for detect -> crop -> classify cascades without Python
glue. A region map model takes a decoded image and N boxes (or 4-point quadrilaterals), crops and
normalizes every region, sends the crops as batch rows to its target model - whose own dynamic
batcher mixes them with the crops of concurrent requests - and gathers the target's outputs back
as [N, ...] tensors (N = 0 gives empty tensors). Parameters (config `parameters`, strings):

    model          target model (must batch: max_batch_size > 0)           required
    model_input    the target's image input                                 its first input
    output_map     "OUT=target_out,..." region-map output <- target output  same names
    image_input    region-map input holding the HxWx3 UINT8 image           "IMAGE"
                   (a leading batch dimension of 1 is accepted)
    image_meta_input  optional [6] canvas transform of the image model's "decoded" output; boxes
                   arrive in original pixels and are mapped onto the canvas with it
    boxes_input    region-map input holding [N,4] xyxy boxes or [N,8] quads "BOXES"
    crop_size      "WxH" the target's input size                             required
    keep_ratio     "true": resize to the full crop height keeping aspect, pad on the right
                   (text lines)
    max_crop_width keep_ratio only: crops wider than crop_size grow up to this width (the target
                   input's width must then be -1); a request's crops all get the width of its
                   widest, rounded up to a multiple of width_bucket   crop width
    width_bucket   keep_ratio only: the width granularity, so concurrent requests' crops share
                   shapes and batch together                          32
    pad_value, color (RGB|BGR), layout (NCHW|NHWC), dtype (FP32|FP16|UINT8), scale, mean, std
    expand         grow each box by this factor around its centre before cropping ("1.0")
    crop_mode      "direct": one warp from the image to the crop size (default); "native": cut each
                   region at its own whole-pixel size (bicubic, replicated borders), then resize
                   bilinearly, as PP-OCR's reference pipeline does

Threading: scheduling runs on the event loop; cropping runs on the default thread pool.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np

from packserve.core.admission import DEFAULT_MAX_PENDING
from packserve.core.clock import Clock
from packserve.core.composite import CompositeScheduler
from packserve.core.dispatch import Dispatcher
from packserve.core.observer import InferenceObserver
from packserve.errors import ConfigError, InvalidArgumentError, PackserveError
from packserve.messages import InferRequest, RequestedOutput, Tensor
from packserve.model_spec import ModelSpec


@dataclass(frozen=True)
class RegionMapParams:
    model: str
    model_input: str
    output_map: dict[str, str]  # region-map output -> target output
    image_input: str
    boxes_input: str
    image_meta_input: str  # "" = boxes are already in the image's pixels
    crop_width: int
    crop_height: int
    keep_ratio: bool
    max_crop_width: int
    width_bucket: int
    pad_value: float
    color: str
    layout: str
    dtype: str
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    expand: float
    crop_mode: str = "direct"

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> RegionMapParams:
        p = spec.parameters
        where = f"region_map model '{spec.name}'"
        if not p.get("model"):
            raise ConfigError(f"{where}: parameter 'model' (the per-region model) is required")
        try:
            width, _, height = p["crop_size"].lower().partition("x")
            crop_width, crop_height = int(width), int(height)
            output_map = (
                dict(pair.split("=", 1) for pair in p["output_map"].split(","))
                if p.get("output_map")
                else {o.name: o.name for o in spec.outputs}
            )
            params = cls(
                model=p["model"],
                model_input=p.get("model_input", ""),
                output_map={k.strip(): v.strip() for k, v in output_map.items()},
                image_input=p.get("image_input", "IMAGE"),
                boxes_input=p.get("boxes_input", "BOXES"),
                image_meta_input=p.get("image_meta_input", ""),
                crop_width=crop_width,
                crop_height=crop_height,
                keep_ratio=p.get("keep_ratio", "false").lower() == "true",
                max_crop_width=int(p.get("max_crop_width", str(crop_width))),
                width_bucket=int(p.get("width_bucket", "32")),
                pad_value=float(p.get("pad_value", "0")),
                color=p.get("color", "RGB").upper(),
                layout=p.get("layout", "NCHW").upper(),
                dtype=p.get("dtype", "FP32").upper(),
                scale=float(p.get("scale", "1")),
                mean=tuple(float(v) for v in p.get("mean", "0").split(",")),
                std=tuple(float(v) for v in p.get("std", "1").split(",")),
                expand=float(p.get("expand", "1")),
                crop_mode=p.get("crop_mode", "direct").lower(),
            )
        except KeyError as exc:
            raise ConfigError(f"{where}: parameter {exc} is required") from None
        except ValueError as exc:
            raise ConfigError(f"{where}: bad parameter value: {exc}") from None
        if params.crop_width <= 0 or params.crop_height <= 0:
            raise ConfigError(f"{where}: crop_size must be positive, got {p['crop_size']}")
        if params.max_crop_width < params.crop_width or params.width_bucket <= 0:
            raise ConfigError(
                f"{where}: max_crop_width must be >= the crop_size width ({params.crop_width}) and "
                f"width_bucket positive, got {params.max_crop_width} and {params.width_bucket}"
            )
        if params.max_crop_width > params.crop_width and not params.keep_ratio:
            raise ConfigError(f"{where}: max_crop_width applies with keep_ratio: true only")
        if params.color not in ("RGB", "BGR") or params.layout not in ("NCHW", "NHWC"):
            raise ConfigError(f"{where}: color must be RGB|BGR and layout NCHW|NHWC")
        if params.crop_mode not in ("direct", "native"):
            raise ConfigError(f"{where}: crop_mode must be direct or native, got {params.crop_mode}")
        if params.dtype not in ("FP32", "FP16", "UINT8"):
            raise ConfigError(f"{where}: dtype must be FP32, FP16 or UINT8, got {params.dtype}")
        for name in (params.image_input, params.boxes_input, params.image_meta_input):
            if name and spec.input(name) is None:
                raise ConfigError(f"{where}: has no input '{name}'")
        for name in params.output_map:
            if spec.output(name) is None:
                raise ConfigError(f"{where}: output_map names unknown output '{name}'")
        return params


def validate_region_map(spec: ModelSpec, models: dict[str, ModelSpec]) -> None:
    """Load-time check against the ready models: the target exists, batches, and has the tensors."""
    params = RegionMapParams.from_spec(spec)
    target = models.get(params.model)
    where = f"region_map model '{spec.name}'"
    if target is None:
        raise ConfigError(f"{where}: target model '{params.model}' is not loaded")
    if target.max_batch_size <= 0:
        raise ConfigError(f"{where}: target model '{params.model}' must batch (max_batch_size > 0)")
    if params.model_input and target.input(params.model_input) is None:
        raise ConfigError(f"{where}: target model '{params.model}' has no input '{params.model_input}'")
    target_input = target.input(params.model_input) if params.model_input else target.inputs[0]
    if params.max_crop_width > params.crop_width and target_input is not None:
        width_dim = target_input.dims[-1] if params.layout == "NCHW" else target_input.dims[-2]
        if width_dim != -1:
            raise ConfigError(
                f"{where}: max_crop_width {params.max_crop_width} needs a variable width (-1) in "
                f"target input '{target_input.name}', got dims {list(target_input.dims)}"
            )
    for ours, theirs in params.output_map.items():
        out = target.output(theirs)
        if out is None:
            raise ConfigError(f"{where}: target model '{params.model}' has no output '{theirs}'")
        if out.datatype is not spec.output(ours).datatype:  # type: ignore[union-attr]
            raise ConfigError(
                f"{where}: output '{ours}' is {spec.output(ours).datatype.wire_name} "  # type: ignore[union-attr]
                f"but target output '{theirs}' is {out.datatype.wire_name}"
            )


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


def keep_ratio_widths(
    boxes: np.ndarray, params: RegionMapParams, sizes: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, int]:
    """Each region's width at the crop height with its aspect ratio kept (at least 1, at most
    max_crop_width), and the request's common canvas width: the widest, at least the crop_size
    width (as PP-OCR's recognizer pads to 320 at least), rounded up to a width_bucket multiple.
    `sizes` (widths, heights) overrides the regions' own sizes (the native crops' shapes)."""
    widths, heights = sizes if sizes is not None else region_sizes(boxes)
    scaled = np.ceil(params.crop_height * widths / np.maximum(heights, 1.0)).astype(int)
    fitted = np.clip(scaled, 1, params.max_crop_width)
    widest = max(params.crop_width, int(fitted.max()) if len(fitted) else 0)
    bucket = params.width_bucket
    canvas = widest
    if widest > params.crop_width:  # round up to the bucket, never past the limit
        canvas = min(params.max_crop_width, -(-widest // bucket) * bucket)
    return np.minimum(fitted, canvas), canvas


def crop_pixels(image: np.ndarray, boxes: np.ndarray, params: RegionMapParams) -> np.ndarray:
    """uint8 [N, H, W, 3] crops of every region at crop_size; with keep_ratio each crop keeps its
    aspect ratio at the full height and is padded on the right (what text recognizers expect),
    on a canvas as wide as the request's widest crop allows (see keep_ratio_widths)."""
    from packserve.backends.image.cpu_ops import crop_regions

    size = (params.crop_width, params.crop_height)
    pad = int(params.pad_value)
    if params.crop_mode == "native":
        return _native_crops(image, boxes, params)
    if not params.keep_ratio:
        return crop_regions(image, boxes, size, pad_value=pad)
    fitted, canvas = keep_ratio_widths(boxes, params)
    crops = np.full((len(boxes), params.crop_height, canvas, image.shape[2]), pad, np.uint8)
    for index, width in enumerate(fitted):
        crops[index, :, :width] = crop_regions(
            image, boxes[index : index + 1], (int(width), params.crop_height), pad_value=pad
        )[0]
    return crops


def _native_crops(image: np.ndarray, boxes: np.ndarray, params: RegionMapParams) -> np.ndarray:
    """crop_mode native: each region cut at its own size, then resized (keep_ratio: to the crop
    height keeping its ratio, padded on the right) with bilinear interpolation."""
    import cv2

    from packserve.backends.image.cpu_ops import crop_native

    try:
        natives = [crop_native(image, box) for box in boxes]
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    height = params.crop_height
    if not params.keep_ratio:
        size = (params.crop_width, height)
        return np.stack([cv2.resize(n, size, interpolation=cv2.INTER_LINEAR) for n in natives])
    shapes = np.array([n.shape[:2] for n in natives], dtype=np.float64).reshape(-1, 2)
    fitted, canvas = keep_ratio_widths(boxes, params, (shapes[:, 1], shapes[:, 0]))
    crops = np.full((len(boxes), height, canvas, image.shape[2]), int(params.pad_value), np.uint8)
    for index, (native, width) in enumerate(zip(natives, fitted, strict=True)):
        resized = cv2.resize(native, (int(width), height), interpolation=cv2.INTER_LINEAR)
        crops[index, :, : int(width)] = resized.reshape(height, int(width), -1)
    return crops


def crop_and_normalize(image: np.ndarray, boxes: np.ndarray, params: RegionMapParams) -> np.ndarray:
    """Crops of every box, resized to crop_size and normalized to the target's input layout."""
    crops = crop_pixels(image, expand_regions(boxes, params.expand), params)  # RGB like the image
    if params.color == "BGR":
        crops = crops[..., ::-1]
    if params.dtype == "UINT8":
        out: np.ndarray = crops
    else:
        mean, std = np.asarray(params.mean, np.float32), np.asarray(params.std, np.float32)
        values = (crops.astype(np.float32) * params.scale - mean) / std
        out = values.astype(np.float16) if params.dtype == "FP16" else values
    if params.layout == "NCHW":
        out = out.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out)


def to_canvas(boxes: np.ndarray, meta: np.ndarray) -> np.ndarray:
    """Boxes in original pixels -> pixels of the decoded canvas, through the image model's [6]
    meta (scale_x, scale_y, offset_x, offset_y, source_w, source_h): canvas = orig * scale + offset."""
    out = boxes.astype(np.float32, copy=True)
    out[:, 0::2] = out[:, 0::2] * meta[0] + meta[2]
    out[:, 1::2] = out[:, 1::2] * meta[1] + meta[3]
    return out


class RegionMapScheduler(CompositeScheduler):
    """The scheduler of a region map model: one request in, one chunked target request per
    max_batch_size crops out, outputs gathered in box order."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        version: str,
        dispatcher: Dispatcher,
        observer: InferenceObserver,
        clock: Clock | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        super().__init__(
            spec,
            version=version,
            dispatcher=dispatcher,
            observer=observer,
            clock=clock,
            max_pending=max_pending,
        )
        self._params = RegionMapParams.from_spec(spec)

    async def _run(self, request: InferRequest) -> dict[str, Tensor]:
        params, timing = self._params, request.timing
        timing.queue_start_ns = timing.compute_start_ns = self._clock.now_ns()
        image = np.asarray(_host(request.inputs[params.image_input]))
        if image.ndim == 4 and image.shape[0] == 1:  # a batching decoder's [1, H, W, C]
            image = image[0]
        if image.ndim != 3:
            raise InvalidArgumentError(
                f"model '{self._spec.name}' input '{params.image_input}': expected an HxWxC image, "
                f"got shape {list(image.shape)}"
            )
        raw_boxes = _host(request.inputs[params.boxes_input])
        boxes = np.asarray(raw_boxes, dtype=np.float32).reshape(-1, _box_width(request, params))
        if params.image_meta_input:
            meta = np.asarray(_host(request.inputs[params.image_meta_input]), np.float32).reshape(-1)
            if meta.shape != (6,):
                raise InvalidArgumentError(
                    f"model '{self._spec.name}' input '{params.image_meta_input}': expected 6 values "
                    f"(scale_x, scale_y, offset_x, offset_y, width, height), got {meta.size}"
                )
            boxes = to_canvas(boxes, meta)
        wanted = [o.name for o in request.outputs] if request.outputs else list(params.output_map)
        if len(boxes) == 0:
            now = self._clock.now_ns()
            timing.compute_input_end_ns = timing.compute_infer_end_ns = timing.compute_end_ns = now
            return {name: self._empty(name) for name in wanted}
        loop = asyncio.get_running_loop()
        crops = await loop.run_in_executor(None, crop_and_normalize, image, boxes, params)
        timing.compute_input_end_ns = self._clock.now_ns()
        target = self._dispatcher.model_spec(params.model)
        target_input = params.model_input or target.inputs[0].name
        step = max(1, target.max_batch_size)
        chunks = [crops[i : i + step] for i in range(0, len(crops), step)]
        target_outputs = [RequestedOutput(params.output_map[name]) for name in wanted]
        try:
            responses = await asyncio.gather(
                *(
                    self._dispatcher.infer(
                        InferRequest(
                            model_name=params.model,
                            inputs={target_input: chunk},
                            outputs=target_outputs,
                            id=request.id,
                            priority=request.priority,
                            origin_ns=request.admitted_ns(),
                        )
                    )
                    for chunk in chunks
                )
            )
        except PackserveError as exc:
            raise type(exc)(f"in region_map '{self._spec.name}', model '{params.model}': {exc}") from exc
        timing.compute_infer_end_ns = self._clock.now_ns()
        gathered = {name: _concat([r.outputs[params.output_map[name]] for r in responses]) for name in wanted}
        timing.compute_end_ns = self._clock.now_ns()
        timing.batch_size = 1
        return gathered

    def _empty(self, name: str) -> np.ndarray:
        out = self._spec.output(name)
        if out is None:
            raise InvalidArgumentError(f"model '{self._spec.name}' has no output '{name}'")
        dims = tuple(max(d, 0) for d in out.dims[1:])
        return np.zeros((0, *dims), dtype=out.datatype.numpy)


def _box_width(request: InferRequest, params: RegionMapParams) -> int:
    shape = request.inputs[params.boxes_input].shape
    width = int(shape[-1]) if len(shape) else 4
    if width not in (4, 8):
        raise InvalidArgumentError(
            f"model '{request.model_name}' input '{params.boxes_input}': expected [N,4] boxes "
            f"or [N,8] quads, got shape {list(shape)}"
        )
    return width


def _host(tensor: Any) -> Any:
    if hasattr(tensor, "detach") and hasattr(tensor, "cpu"):
        return tensor.detach().cpu().numpy()
    return tensor


def _concat(parts: list[Any]) -> Any:
    hosts = [_host(p) for p in parts]
    return hosts[0] if len(hosts) == 1 else np.concatenate(hosts, axis=0)
