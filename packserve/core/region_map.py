"""`platform: "region_map"`: run a model once per region of an image, batched across requests.

packserve's extension to Triton's ensembles for detect -> crop -> classify cascades without Python
glue. Per request it fans out and gathers, like an ensemble: one request to its crop model (an
image model in crop_boxes mode) cuts every box or quadrilateral out of the image, the crops go as
batch rows to its target model (one request per max_batch_size crops, mixed by the target's
batcher with the crops of concurrent requests), and the target's outputs come back as [N, ...]
tensors in box order (N = 0 gives empty tensors without calling either model). Both are ordinary
models: batched, counted and bounded by their own configs. Parameters: packserve/config/region_map.py.

Threading: everything here runs on the event loop; the crop and target models execute on their
own instances' workers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from packserve.config.region_map import RegionMapPlan, crop_output_name
from packserve.core.admission import DEFAULT_MAX_PENDING
from packserve.core.clock import Clock
from packserve.core.composite import CompositeScheduler
from packserve.core.dispatch import Dispatcher
from packserve.core.observer import InferenceObserver
from packserve.errors import InvalidArgumentError, PackserveError
from packserve.messages import InferRequest, RequestedOutput, Tensor, to_host
from packserve.model_spec import ModelSpec


class RegionMapScheduler(CompositeScheduler):
    """The scheduler of a region map model: one crop request, then one target request per
    max_batch_size crops, outputs gathered in box order."""

    def __init__(
        self,
        plan: RegionMapPlan,
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
        self._plan = plan

    async def _run(self, request: InferRequest) -> dict[str, Tensor]:
        plan, timing = self._plan, request.timing
        timing.queue_start_ns = timing.compute_start_ns = self._clock.now_ns()
        wanted = [o.name for o in request.outputs] if request.outputs else list(plan.output_map)
        regions = self._regions(request)
        if regions is None:
            now = self._clock.now_ns()
            timing.compute_input_end_ns = timing.compute_infer_end_ns = timing.compute_end_ns = now
            return {name: self._empty(name) for name in wanted}
        crops = await self._crops(request, regions)
        timing.compute_input_end_ns = self._clock.now_ns()
        target = self._dispatcher.model_spec(plan.model)
        target_input = plan.model_input or target.inputs[0].name
        step = max(1, target.max_batch_size)
        outputs = [RequestedOutput(plan.output_map[name]) for name in wanted]
        responses = await asyncio.gather(
            *(
                self._call(plan.model, request, {target_input: crops[i : i + step]}, outputs)
                for i in range(0, len(crops), step)
            )
        )
        timing.compute_infer_end_ns = self._clock.now_ns()
        gathered = {name: _concat([r[plan.output_map[name]] for r in responses]) for name in wanted}
        timing.compute_end_ns = self._clock.now_ns()
        timing.batch_size = 1
        return gathered

    def _regions(self, request: InferRequest) -> dict[str, np.ndarray] | None:
        """The crop model's inputs (our image, boxes and meta, checked), or None without boxes."""
        plan, model = self._plan, self._spec.name
        image = np.asarray(to_host(request.inputs[plan.image_input]))
        if image.ndim == 4 and image.shape[0] == 1:  # a batching decoder's [1, H, W, C]
            image = image[0]
        if image.ndim != 3:
            raise InvalidArgumentError(
                f"model '{model}' input '{plan.image_input}': expected an HxWxC image, "
                f"got shape {list(image.shape)}"
            )
        shape = request.inputs[plan.boxes_input].shape
        width = int(shape[-1]) if len(shape) else 4
        if width not in (4, 8):
            raise InvalidArgumentError(
                f"model '{model}' input '{plan.boxes_input}': expected [N,4] boxes "
                f"or [N,8] quads, got shape {list(shape)}"
            )
        boxes = np.asarray(to_host(request.inputs[plan.boxes_input]), dtype=np.float32).reshape(-1, width)
        regions = {plan.image_input: image, plan.boxes_input: boxes}
        if plan.image_meta_input:
            meta = np.asarray(to_host(request.inputs[plan.image_meta_input]), np.float32).reshape(-1)
            if meta.shape != (6,):
                raise InvalidArgumentError(
                    f"model '{model}' input '{plan.image_meta_input}': expected 6 values "
                    f"(scale_x, scale_y, offset_x, offset_y, width, height), got {meta.size}"
                )
            regions[plan.image_meta_input] = meta
        return regions if len(boxes) else None

    async def _crops(self, request: InferRequest, regions: dict[str, np.ndarray]) -> Any:
        """[N, ...] crops of the request's regions, cut by the crop model."""
        crop = self._dispatcher.model_spec(self._plan.crop_model)
        name = crop_output_name(self._plan, crop)
        if crop.batching:  # one image per request: a batch dimension of 1
            regions = {key: value[None] for key, value in regions.items()}
        outputs = await self._call(self._plan.crop_model, request, regions, [RequestedOutput(name)])
        crops = outputs[name]
        return crops[0] if crop.batching else crops

    async def _call(
        self, model: str, parent: InferRequest, inputs: dict[str, Any], outputs: list[RequestedOutput]
    ) -> dict[str, Tensor]:
        sub_request = InferRequest(
            model_name=model,
            inputs=inputs,
            outputs=outputs,
            id=parent.id,
            priority=parent.priority,
            origin_ns=parent.admitted_ns(),
        )
        try:
            return (await self._dispatcher.infer(sub_request)).outputs
        except PackserveError as exc:
            # Same error class (so the status code stays right), with the model named.
            raise type(exc)(f"in region_map '{self._spec.name}', model '{model}': {exc}") from exc

    def _empty(self, name: str) -> np.ndarray:
        out = self._spec.output(name)
        if out is None:
            raise InvalidArgumentError(f"model '{self._spec.name}' has no output '{name}'")
        dims = tuple(max(d, 0) for d in out.dims[1:])
        return np.zeros((0, *dims), dtype=out.datatype.numpy)


def _concat(parts: list[Any]) -> Any:
    hosts = [to_host(p) for p in parts]
    return hosts[0] if len(hosts) == 1 else np.concatenate(hosts, axis=0)
