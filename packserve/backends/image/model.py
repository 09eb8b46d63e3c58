"""The `image` backend: ImageModel and its CPU instance (decode + per-output pipelines, crop_boxes).

Threading: `execute` runs on the instance's worker thread; it fans the batch's rows out to a small
pool owned by the instance (OpenCV, libjpeg-turbo and Pillow release the GIL) and joins them before
returning. Output arrays are allocated once per batch; each request receives views of its rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import cv2
import numpy as np

from packserve.backends.base import (
    BackendInstance,
    BackendModel,
    BatchResult,
    ExecutionTimer,
    InstanceContext,
)
from packserve.backends.image.cpu_ops import normalization_table, render, write_canvas
from packserve.backends.image.decode import decode_image
from packserve.backends.image.geometry import META_SIZE, map_boxes_to_canvas, transform_for
from packserve.backends.image.params import ImagePlan, Pipeline, parse_plan
from packserve.backends.image.region_crops import cut_regions
from packserve.errors import InvalidArgumentError, ModelExecutionError, PackserveError

if TYPE_CHECKING:
    from packserve.backends.base import ModelContext
    from packserve.messages import InferRequest, Tensor

T = TypeVar("T")


class ImageModel(BackendModel):
    """A model made of image operations only; its config `parameters` say what it computes."""

    def __init__(self, context: ModelContext) -> None:
        super().__init__(context)
        self.plan = parse_plan(context.spec)

    def create_instance(self, instance: InstanceContext) -> BackendInstance:
        if instance.kind == "KIND_GPU":
            from packserve.backends.image.gpu import GpuImageInstance

            return GpuImageInstance(self.plan, f"cuda:{instance.device_id}")
        return CpuImageInstance(self.plan)


def output_shape(pipeline: Pipeline, width: int = 0) -> tuple[int, ...]:
    """Shape of one row of a pipeline's output (without batch or crop-count dimensions); `width`
    overrides the pipeline's for crops of variable width."""
    width = width or pipeline.width
    if pipeline.layout == "NCHW":
        return (3, pipeline.height, width)
    return (pipeline.height, width, 3)


def needed_pipelines(plan: ImagePlan, requests: Sequence[InferRequest]) -> tuple[Pipeline, ...]:
    """Only the pipelines some request of the batch asked for (directly or through its meta)."""
    wanted: set[str] = set()
    for request in requests:
        if request.outputs is None:
            return plan.pipelines
        wanted.update(o.name for o in request.outputs)
    return tuple(p for p in plan.pipelines if p.name in wanted or p.meta_name in wanted)


def encoded_rows(plan: ImagePlan, request: InferRequest) -> list[bytes]:
    """The request's encoded images, one per batch row; InvalidArgumentError naming the problem."""
    tensor = request.inputs.get(plan.input_name)
    if tensor is None:
        raise InvalidArgumentError(f"image model '{plan.model}': missing input '{plan.input_name}'")
    array = np.asarray(tensor, dtype=object)
    expected = "[batch, 1]" if plan.batching else "[1]"
    if array.ndim != (2 if plan.batching else 1) or array.shape[-1] != 1:
        raise InvalidArgumentError(
            f"image model '{plan.model}': input '{plan.input_name}' must have shape {expected} "
            f"(one encoded image per row), got {list(array.shape)}"
        )
    rows: list[bytes] = []
    for element in array.reshape(-1):
        if not isinstance(element, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(
                f"image model '{plan.model}': input '{plan.input_name}' must hold encoded image bytes, "
                f"got {type(element).__name__}"
            )
        rows.append(bytes(element))
    return rows


@dataclass(slots=True)
class EncodedBatch:
    """A batch's encoded images flattened to rows, and which request each row belongs to."""

    images: list[bytes] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)  # request index of each row
    row_counts: list[int] = field(default_factory=list)  # rows per request
    failures: dict[int, PackserveError] = field(default_factory=dict)  # request index -> its error


def gather_encoded_rows(plan: ImagePlan, requests: Sequence[InferRequest]) -> EncodedBatch:
    """Every request's encoded images as one list of rows; a bad request is recorded, not raised,
    so it fails alone."""
    batch = EncodedBatch()
    for index, request in enumerate(requests):
        try:
            rows = encoded_rows(plan, request)
        except PackserveError as exc:
            batch.failures[index] = exc
            rows = []
        batch.images.extend(rows)
        batch.owners.extend([index] * len(rows))
        batch.row_counts.append(len(rows))
    return batch


def with_context(plan: ImagePlan, where: str, error: PackserveError) -> PackserveError:
    """The same error type, its message prefixed with the model and the input row it came from."""
    return type(error)(f"image model '{plan.model}': {where}: {error}")


def collect(
    plan: ImagePlan,
    requests: Sequence[InferRequest],
    row_counts: Sequence[int],
    failures: dict[int, PackserveError],
    outputs: dict[str, np.ndarray],
) -> BatchResult:
    """Split batch-wide arrays back into one result per request (views, no copies)."""
    result: BatchResult = []
    start = 0
    for index, request in enumerate(requests):
        count = row_counts[index]
        stop = start + count
        failure = failures.get(index)
        if failure is not None:
            result.append(failure)
        else:
            names = list(outputs) if request.outputs is None else [o.name for o in request.outputs]
            rows = {n: outputs[n][start:stop] for n in names if n in outputs}
            result.append(rows if plan.batching else {n: t[0] for n, t in rows.items()})
        start = stop
    return result


class CpuImageInstance(BackendInstance):
    def __init__(self, plan: ImagePlan) -> None:
        self.plan = plan
        self._pool = ThreadPoolExecutor(max_workers=plan.threads, thread_name_prefix=f"image-{plan.model}")
        self._tables = {
            p.name: (
                normalization_table(p.normalization, p.dtype.numpy, stepwise=p.region is not None)
                if p.normalization
                else None
            )
            for p in plan.pipelines
        }

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _map(self, work: Callable[[int], T], count: int) -> list[T]:
        if count == 1:
            return [work(0)]
        return list(self._pool.map(work, range(count)))

    def cpu_cores(self, rows: int) -> int:
        # Rows are decoded in parallel on the pool (one row runs on the calling thread).
        return max(1, min(self.plan.threads, rows))

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        # One OpenCV thread per call: parallelism comes from the pool and from other instances.
        cv2.setNumThreads(1)
        if self.plan.mode == "crop_boxes":
            return self._execute_crops(requests, timer)
        return self._execute_decode(requests, timer)

    # --- decode mode ---------------------------------------------------------------------------

    def _execute_decode(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        plan = self.plan
        batch = gather_encoded_rows(plan, requests)
        images, owners, row_counts, failures = batch.images, batch.owners, batch.row_counts, batch.failures
        pipelines = needed_pipelines(plan, requests)
        outputs: dict[str, np.ndarray] = {}
        for pipeline in pipelines:
            outputs[pipeline.name] = np.empty((len(images), *output_shape(pipeline)), pipeline.dtype.numpy)
            if pipeline.meta_name:
                outputs[pipeline.meta_name] = np.zeros((len(images), META_SIZE), np.float32)
        timer.inputs_ready()

        def scale_needed(width: int, height: int) -> float:
            return max(
                max(t.scale_x, t.scale_y) for t in (transform_for(p, width, height) for p in pipelines)
            )

        def process(row: int) -> PackserveError | None:
            try:
                decoded = decode_image(images[row], plan.decode, scale_needed)
                for pipeline in pipelines:
                    transform = transform_for(pipeline, decoded.source_width, decoded.source_height)
                    render(
                        decoded.pixels,
                        transform,
                        pipeline,
                        self._tables[pipeline.name],
                        outputs[pipeline.name][row],
                    )
                    if pipeline.meta_name:
                        outputs[pipeline.meta_name][row] = transform.meta()
            except PackserveError as exc:
                return with_context(plan, f"input '{plan.input_name}' row {row}", exc)
            except Exception as exc:  # a bug must fail this row only, not the whole batch
                return ModelExecutionError(
                    f"image model '{plan.model}': row {row} failed: {type(exc).__name__}: {exc}"
                )
            return None

        for row, error in enumerate(self._map(process, len(images)) if images else []):
            if error is not None:
                failures.setdefault(owners[row], error)
        timer.infer_done()
        return collect(plan, requests, row_counts, failures, outputs)

    # --- crop_boxes mode ----------------------------------------------------------------------

    def _execute_crops(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        timer.inputs_ready()
        results: list[dict[str, Tensor] | PackserveError] = self._map(
            lambda i: self._crop_request(requests[i]), len(requests)
        )
        timer.infer_done()
        return results

    def _crop_request(self, request: InferRequest) -> dict[str, Tensor] | PackserveError:
        plan = self.plan
        try:
            images, boxes, metas = crop_arrays(plan, request)
            out: dict[str, Tensor] = {}
            for pipeline in needed_pipelines(plan, [request]):
                rows = [self._crop_row(pipeline, images[r], boxes[r], metas[r]) for r in range(len(images))]
                if len({row.shape for row in rows}) > 1:  # variable widths differ between images
                    raise InvalidArgumentError(
                        f"image model '{plan.model}': output '{pipeline.name}' has a variable width and "
                        f"the {len(rows)} images of one request gave crops of different widths; send "
                        "one image per request"
                    )
                out[pipeline.name] = np.stack(rows) if plan.batching else rows[0]
            return out
        except PackserveError as exc:
            return exc
        except ValueError as exc:
            return InvalidArgumentError(f"image model '{plan.model}': {exc}")

    def _crop_row(
        self, pipeline: Pipeline, image: np.ndarray, boxes: np.ndarray, meta: np.ndarray | None
    ) -> np.ndarray:
        assert self.plan.crop is not None
        if meta is not None:  # boxes are in original-image pixels: map them onto the decoded image
            boxes = map_boxes_to_canvas(boxes, meta)
        crops = cut_regions(image, boxes, pipeline)
        if self.plan.crop.image_color == "BGR":
            crops = crops[..., ::-1]
        out = np.empty((len(crops), *output_shape(pipeline, crops.shape[2])), pipeline.dtype.numpy)
        for index in range(len(crops)):
            write_canvas(
                np.ascontiguousarray(crops[index]), pipeline, self._tables[pipeline.name], out[index]
            )
        return out


def crop_arrays(
    plan: ImagePlan, request: InferRequest
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray | None]]:
    """Images [B, H, W, 3], boxes [B, N, 4|8] and metas of a crop_boxes request, batch dim added
    for non-batching models; InvalidArgumentError naming the input that is wrong."""
    assert plan.crop is not None
    names = plan.crop
    lead = 1 if plan.batching else 0

    def read(name: str, dtype: type, ndim: int, what: str) -> np.ndarray:
        tensor = request.inputs.get(name)
        if tensor is None:
            raise InvalidArgumentError(f"image model '{plan.model}': missing input '{name}'")
        array = np.asarray(tensor)
        if array.dtype != dtype or array.ndim != ndim + lead:
            raise InvalidArgumentError(
                f"image model '{plan.model}': input '{name}' must be {what}, "
                f"got {array.dtype} shape {list(array.shape)}"
            )
        return array if plan.batching else array[None]

    images = read(names.image, np.uint8, 3, "UINT8 [H, W, 3]")
    boxes = read(names.boxes, np.float32, 2, "FP32 [N, 4] or [N, 8]")
    if images.shape[-1] != 3 or boxes.shape[-1] not in (4, 8) or len(boxes) != len(images):
        raise InvalidArgumentError(
            f"image model '{plan.model}': inputs '{names.image}' {list(images.shape)} and '{names.boxes}' "
            f"{list(boxes.shape)} must be [H, W, 3] and [N, 4|8] with the same batch size"
        )
    metas: list[np.ndarray | None] = [None] * len(images)
    if names.image_meta is not None and names.image_meta in request.inputs:
        meta = read(names.image_meta, np.float32, 1, "FP32 [6]")
        if meta.shape != (len(images), META_SIZE):
            raise InvalidArgumentError(
                f"image model '{plan.model}': input '{names.image_meta}' must be FP32 [{META_SIZE}] per "
                f"image, got shape {list(meta.shape)} for {len(images)} image(s)"
            )
        metas = list(meta)
    return images, boxes, metas
