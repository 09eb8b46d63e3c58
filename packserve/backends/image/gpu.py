"""The GPU path of the image backend: nvjpeg decode (torchvision) and torch resize/pad/normalize, so
pixel outputs stay torch tensors in GPU memory; `_meta` outputs stay small host arrays for the CPU
post-processing that reads them.

Imports no torch at module level (`import packserve` must work without it). The geometry is the
one in geometry.py, shared with the CPU path. Without torchvision (or on a CPU device, as in tests)
images are decoded on the host by decode.py and uploaded. Threading: `execute` runs on the
instance's worker thread, with its own CUDA stream; it synchronizes that stream before returning so
the caller may use the outputs on any stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import simplejpeg

from packserve.backends.base import BackendInstance, BatchResult, ExecutionTimer
from packserve.backends.image.cpu_ops import check_regions
from packserve.backends.image.decode import (
    JPEG_MAGIC,
    PILLOW_JPEG_COLORSPACES,
    check_pixels,
    decode_image,
    jpeg_orientation,
)
from packserve.backends.image.geometry import META_SIZE, Transform, map_boxes_to_canvas, transform_for
from packserve.backends.image.model import (
    CpuImageInstance,
    collect,
    crop_arrays,
    gather_encoded_rows,
    needed_pipelines,
    output_shape,
)
from packserve.backends.image.params import ImagePlan, Pipeline
from packserve.errors import InvalidArgumentError, ModelLoadError, PackserveError

if TYPE_CHECKING:
    import torch

    from packserve.messages import InferRequest, Tensor

TORCH_MODES = {
    "nearest": "nearest",
    "linear": "bilinear",
    "linear_antialias": "bilinear",
    "cubic": "bicubic",
    "area": "area",
}
TORCH_DTYPES = {"FP32": "float32", "FP16": "float16", "UINT8": "uint8"}


def orient_chw(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Make a [C, H, W] image stored with EXIF `orientation` upright (same rules as the CPU path)."""
    flips = {2: (-1,), 3: (-1, -2), 4: (-2,), 5: (), 6: (-1,), 7: (-1, -2), 8: (-2,)}.get(orientation)
    if flips is None:
        return image
    if orientation >= 5:
        image = image.transpose(1, 2)
    return image.flip(flips) if flips else image


def render_torch(
    image: torch.Tensor,
    transform: Transform,
    pipeline: Pipeline,
    gain: torch.Tensor | None,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """One row of one output from an upright uint8 [3, h, w] image, in the pipeline's color order,
    layout and dtype. Rounds after resizing, as the CPU path's uint8 intermediate does, so the two
    paths agree to within one pixel level."""
    import torch
    import torch.nn.functional as F

    pixels = image[None].float()
    size = (transform.resize_height, transform.resize_width)
    if tuple(pixels.shape[-2:]) != size:
        mode = TORCH_MODES[pipeline.interpolation]
        corners = False if mode in ("bilinear", "bicubic") else None
        antialias = pipeline.interpolation == "linear_antialias"
        pixels = F.interpolate(pixels, size=size, mode=mode, align_corners=corners, antialias=antialias)
        pixels = pixels.round_().clamp_(0, 255)
    canvas = torch.full(
        (3, transform.canvas_height, transform.canvas_width), float(pipeline.pad_value), device=image.device
    )
    ox, oy = transform.offset_x, transform.offset_y
    x0, y0 = max(0, -ox), max(0, -oy)
    x1 = min(transform.resize_width, transform.canvas_width - ox)
    y1 = min(transform.resize_height, transform.canvas_height - oy)
    if x1 > x0 and y1 > y0:
        canvas[:, y0 + oy : y1 + oy, x0 + ox : x1 + ox] = pixels[0, :, y0:y1, x0:x1]
    return finish_torch(canvas, pipeline, gain, bias)


def finish_torch(
    canvas: torch.Tensor, pipeline: Pipeline, gain: torch.Tensor | None, bias: torch.Tensor | None
) -> torch.Tensor:
    """Float RGB [3, H, W] (0..255) -> color order, normalization, layout and dtype of the output."""
    import torch

    if pipeline.color == "BGR":
        canvas = canvas.flip(0)
    if gain is not None and bias is not None:
        canvas = torch.addcmul(bias[:, None, None], canvas, gain[:, None, None])
    if pipeline.layout in ("NHWC", "HWC"):
        canvas = canvas.permute(1, 2, 0)
    return canvas.to(getattr(torch, TORCH_DTYPES[pipeline.dtype.wire_name])).contiguous()


def crop_regions_torch(
    image: torch.Tensor, boxes: np.ndarray, size: tuple[int, int], pad_value: int = 0, mode: str = "bilinear"
) -> torch.Tensor:
    """GPU twin of cpu_ops.crop_regions on a [3, H, W] uint8 image: [N, 3, height, width] float
    (0..255, rounded). Corner boxes and quadrilaterals both become one homography and one batched
    grid_sample."""
    import torch
    import torch.nn.functional as F

    width, height = size
    quads = check_regions(boxes)
    if len(quads) == 0:
        return torch.empty((0, image.shape[0], height, width), device=image.device)
    if quads.shape[1] == 4:
        x1, y1, x2, y2 = quads.T
        x2, y2 = np.maximum(x2, x1 + 1.0), np.maximum(y2, y1 + 1.0)
        quads = np.stack([x1, y1, x2, y1, x2, y2, x1, y2], axis=1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    # Output pixel centers (u + 0.5, v + 0.5) -> source points, then to grid_sample's [-1, 1] (its
    # align_corners=False convention: -1 and 1 are the outer edges of the image).
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    centers = np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    grids = np.empty((len(quads), height, width, 2), dtype=np.float32)
    src_h, src_w = image.shape[-2:]
    for index, quad in enumerate(quads):
        homography = cv2.getPerspectiveTransform(target, quad.reshape(4, 2).astype(np.float32))
        points = homography @ centers
        grids[index, ..., 0] = (points[0] / points[2] * (2.0 / src_w) - 1.0).reshape(height, width)
        grids[index, ..., 1] = (points[1] / points[2] * (2.0 / src_h) - 1.0).reshape(height, width)
    shifted = image[None].float() - pad_value  # grid_sample pads with zeros: shift so zero = pad_value
    grid = torch.from_numpy(grids).to(image.device)
    crops = F.grid_sample(shifted.expand(len(quads), -1, -1, -1), grid, mode=mode, align_corners=False)
    return (crops + pad_value).round_().clamp_(0, 255)


class GpuImageInstance(BackendInstance):
    def __init__(self, plan: ImagePlan, device: str) -> None:
        try:
            import torch
        except ImportError as exc:
            raise ModelLoadError(f"image model '{plan.model}': KIND_GPU instances need torch: {exc}") from exc
        lanczos = [p.name for p in plan.pipelines if p.interpolation == "lanczos"]
        if lanczos:  # torch has no Lanczos kernel; a bicubic stand-in would differ silently
            raise ModelLoadError(
                f"image model '{plan.model}': interpolation 'lanczos' (outputs {lanczos}) runs on "
                f"KIND_CPU instances only; use 'cubic' on the GPU or a KIND_CPU instance group"
            )
        reencoded = [p.name for p in plan.pipelines if p.jpeg_quality]
        if reencoded:
            raise ModelLoadError(
                f"image model '{plan.model}': jpeg_quality (outputs {reencoded}) runs on KIND_CPU "
                f"instances only"
            )
        # The torch crop is one homography per region to a fixed size. Crops shaped otherwise
        # (keep_ratio, native, expand, variable widths) are cut on the host, as the CPU instance
        # cuts them, and stay host arrays (documented in docs/image-ops.md).
        host_cuts = any(_cut_needs_host(p) for p in plan.pipelines)
        self._host_cuts = CpuImageInstance(plan) if host_cuts else None
        self.plan = plan
        self.device = torch.device(device)
        self._cuda = self.device.type == "cuda"
        self._stream: Any = torch.cuda.Stream(self.device) if self._cuda else None
        self._nvjpeg: Any = None
        if self._cuda:
            try:
                from torchvision.io import decode_jpeg

                self._nvjpeg = decode_jpeg
            except ImportError:  # host decode + upload still works, only slower
                self._nvjpeg = None
        self._norms: dict[str, tuple[torch.Tensor, torch.Tensor] | None] = {}
        for pipeline in plan.pipelines:
            if pipeline.normalization is None:
                self._norms[pipeline.name] = None
            else:
                gain, bias = pipeline.normalization.gain_and_bias()
                self._norms[pipeline.name] = (
                    torch.tensor(gain, dtype=torch.float32, device=self.device),
                    torch.tensor(bias, dtype=torch.float32, device=self.device),
                )

    def close(self) -> None:
        if self._host_cuts is not None:
            self._host_cuts.close()

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        import torch

        context = torch.cuda.stream(self._stream) if self._stream is not None else nullcontext()
        with context:
            if self._host_cuts is not None:
                return self._host_cuts.execute(requests, timer)
            if self.plan.mode == "crop_boxes":
                timer.inputs_ready()
                results: BatchResult = [self._crop_request(r) for r in requests]
                timer.infer_done()
            else:
                results = self._execute_decode(requests, timer)
        if self._stream is not None:
            self._stream.synchronize()
        return results

    def _execute_decode(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        import torch

        plan = self.plan
        batch = gather_encoded_rows(plan, requests)
        images, owners, row_counts, failures = batch.images, batch.owners, batch.row_counts, batch.failures
        timer.inputs_ready()
        pipelines = needed_pipelines(plan, requests)
        decoded = self.decode_rows(images, pipelines)
        outputs: dict[str, Tensor] = {}
        for pipeline in pipelines:
            dtype = getattr(torch, TORCH_DTYPES[pipeline.dtype.wire_name])
            out = torch.empty((len(images), *output_shape(pipeline)), dtype=dtype, device=self.device)
            meta = np.zeros((len(images), META_SIZE), np.float32)
            norm = self._norms[pipeline.name]
            for row, item in enumerate(decoded):
                if isinstance(item, PackserveError):
                    continue
                pixels, width, height = item
                transform = transform_for(pipeline, width, height)
                out[row] = render_torch(pixels, transform, pipeline, *(norm or (None, None)))
                meta[row] = transform.meta()
            outputs[pipeline.name] = out
            if pipeline.meta_name:
                outputs[pipeline.meta_name] = meta
        for row, item in enumerate(decoded):
            if isinstance(item, PackserveError):
                failures.setdefault(owners[row], item)
        timer.infer_done()
        return collect(plan, requests, row_counts, failures, outputs)

    def decode_rows(
        self, images: list[bytes], pipelines: Sequence[Pipeline]
    ) -> list[tuple[torch.Tensor, int, int] | PackserveError]:
        """Upright uint8 [3, h, w] device tensors with their upright source size, or the row's error."""
        import torch

        plan = self.plan

        def scale_needed(width: int, height: int) -> float:
            return max(
                max(t.scale_x, t.scale_y) for t in (transform_for(p, width, height) for p in pipelines)
            )

        results: list[tuple[torch.Tensor, int, int] | PackserveError] = []
        on_device: list[tuple[int, int]] = []  # (row, orientation) of JPEGs left to nvjpeg
        for row, data in enumerate(images):
            try:
                if self._nvjpeg is not None and data[:3] == JPEG_MAGIC:
                    orientation = self._check_jpeg(data)
                    if orientation:
                        results.append(InvalidArgumentError("pending"))  # replaced after the batched decode
                        on_device.append((row, orientation))
                        continue
                host = decode_image(data, plan.decode, scale_needed)
                pixels = (
                    host.pixels if host.pixels.flags.writeable else host.pixels.copy()
                )  # Pillow's are read-only
                tensor = torch.from_numpy(pixels).to(self.device, non_blocking=True).permute(2, 0, 1)
                results.append((tensor, host.source_width, host.source_height))
            except PackserveError as exc:
                results.append(
                    type(exc)(f"image model '{plan.model}': input '{plan.input_name}' row {row}: {exc}")
                )
        if on_device:
            for (row, orientation), device_pixels in zip(
                on_device, self._nvjpeg_batch([images[r] for r, _ in on_device]), strict=True
            ):
                if isinstance(device_pixels, PackserveError):
                    results[row] = type(device_pixels)(
                        f"image model '{plan.model}': input '{plan.input_name}' row {row}: {device_pixels}"
                    )
                else:
                    upright = orient_chw(device_pixels, orientation)
                    results[row] = (upright, int(upright.shape[2]), int(upright.shape[1]))
        return results

    def _check_jpeg(self, data: bytes) -> int:
        """Header checks before the device decode; the orientation to apply, or 0 if this JPEG must
        go through the host decoder (CMYK)."""
        try:
            height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError as exc:
            raise InvalidArgumentError(f"corrupt JPEG header: {exc}") from None
        check_pixels(width, height, self.plan.decode)
        if colorspace in PILLOW_JPEG_COLORSPACES:
            return 0
        return jpeg_orientation(data) if self.plan.decode.exif_orientation else 1

    def _nvjpeg_batch(self, datas: list[bytes]) -> list[torch.Tensor | PackserveError]:
        """One batched nvjpeg call; if it fails, decode one by one so only the bad rows fail."""
        import torch
        from torchvision.io import ImageReadMode

        encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
        try:
            return list(self._nvjpeg(encoded, mode=ImageReadMode.RGB, device=self.device))
        except RuntimeError:
            pass
        results: list[torch.Tensor | PackserveError] = []
        for tensor in encoded:
            try:
                results.append(self._nvjpeg(tensor, mode=ImageReadMode.RGB, device=self.device))
            except RuntimeError as exc:
                results.append(InvalidArgumentError(f"corrupt or truncated JPEG: {exc}"))
        return results

    def _crop_request(self, request: InferRequest) -> dict[str, Tensor] | PackserveError:
        import torch

        plan = self.plan
        assert plan.crop is not None
        try:
            images, boxes, metas = crop_arrays(plan, request)
            out: dict[str, Tensor] = {}
            for pipeline in needed_pipelines(plan, [request]):
                rows = []
                for r in range(len(images)):
                    image = torch.as_tensor(images[r], device=self.device).permute(2, 0, 1)
                    if plan.crop.image_color == "BGR":
                        image = image.flip(0)
                    meta = metas[r]
                    row_boxes = boxes[r] if meta is None else map_boxes_to_canvas(boxes[r], meta)
                    crops = crop_regions_torch(
                        image,
                        row_boxes,
                        (pipeline.width, pipeline.height),
                        pipeline.pad_value,
                        "nearest" if pipeline.interpolation == "nearest" else "bilinear",
                    )
                    norm = self._norms[pipeline.name] or (None, None)
                    dtype = getattr(torch, TORCH_DTYPES[pipeline.dtype.wire_name])
                    row = torch.empty((len(crops), *output_shape(pipeline)), dtype=dtype, device=self.device)
                    for index, crop in enumerate(crops):
                        row[index] = finish_torch(crop, pipeline, *norm)
                    rows.append(row)
                out[pipeline.name] = torch.stack(rows) if plan.batching else rows[0]
            return out
        except PackserveError as exc:
            return exc
        except ValueError as exc:
            return InvalidArgumentError(f"image model '{plan.model}': {exc}")


def _cut_needs_host(pipeline: Pipeline) -> bool:
    cut = pipeline.region
    return cut is not None and (cut.keep_ratio or cut.native or cut.expand != 1.0 or cut.variable_width)
