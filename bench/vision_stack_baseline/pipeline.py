"""Run an ensemble's steps outside the server, over a batch of images, with pluggable model calls.

`PipelineExecutor` walks the ensemble's steps in order and hands each step's inputs to a
`ModelCaller`: in-process backends (`LocalModels`), or a mix of local pre/post-processing and
remote model servers (`per_model`). Region-map steps are expanded here as the server's
`RegionMapScheduler` does (its crop model called on each image, the same crops), the target model
called on the crops of all the images at once, in chunks of its max batch size.

Threading: one executor and its `LocalModels` belong to one thread; backend instances are not
shared between threads (each worker loads its own instances over shared `BackendModel`s).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from packserve.backends.base import (
    BackendInstance,
    BackendModel,
    ExecutionTimer,
    InstanceContext,
    ModelContext,
)
from packserve.backends.registry import load_backend
from packserve.config.loader import load_model_config
from packserve.config.region_map import (
    RegionMapPlan,
    crop_output_name,
    parse_region_map,
    region_map_callees,
)
from packserve.errors import InvalidArgumentError, PackserveError
from packserve.messages import InferRequest, RequestedOutput
from packserve.model_spec import REGION_MAP_PLATFORM, ModelSpec

# Tensors of one image (or one request) by name.
Tensors = dict[str, np.ndarray]


class ModelCaller(Protocol):
    def __call__(self, model: str, requests: Sequence[Tensors], wanted: Sequence[str]) -> list[Tensors]:
        """Run `model` on every request (one per image, or one per chunk of crops) and return
        the `wanted` outputs of each, in order."""


class NullTimer(ExecutionTimer):
    """Phase marks nobody reads: the bench times whole images, not phases."""

    def inputs_ready(self) -> None:
        return None

    def infer_done(self) -> None:
        return None


def load_specs(repository: Path, names: Sequence[str]) -> dict[str, ModelSpec]:
    return {name: load_model_config(repository / name, backends=load_backend).spec for name in names}


def ensemble_models(repository: Path, ensemble: str) -> tuple[ModelSpec, dict[str, ModelSpec]]:
    """The ensemble's spec and the specs of every model it calls, region-map crop models and
    targets included."""
    top = load_model_config(repository / ensemble, backends=load_backend).spec
    specs = load_specs(repository, [step.model_name for step in top.ensemble_steps])
    callees = [name for s in specs.values() for name in region_map_callees(s)]
    specs |= load_specs(repository, [t for t in dict.fromkeys(callees) if t not in specs])
    return top, specs


def is_region_map(spec: ModelSpec) -> bool:
    return spec.platform == REGION_MAP_PLATFORM


@dataclass
class LoadedBackend:
    spec: ModelSpec
    model: BackendModel

    def new_instance(self, label: str) -> BackendInstance:
        return self.model.create_instance(
            InstanceContext(name=f"{self.spec.name}_{label}", kind="KIND_CPU", device_id=0)
        )


def load_backends(repository: Path, specs: Mapping[str, ModelSpec]) -> dict[str, LoadedBackend]:
    """Load weights once per model (shared by every worker's instances), as the server does."""
    loaded: dict[str, LoadedBackend] = {}
    for name, spec in specs.items():
        if spec.is_ensemble or is_region_map(spec):
            continue
        loaded_config = load_model_config(repository / name, backends=load_backend)
        version = loaded_config.versions[-1]
        context = ModelContext(
            spec=spec,
            config=loaded_config.config,
            repository=repository,
            model_dir=repository / name,
            version=version,
            version_dir=repository / name / str(version),
        )
        loaded[name] = LoadedBackend(spec, load_backend(spec.backend)(context))
    return loaded


class LocalModels:
    """A `ModelCaller` over in-process backend instances owned by one thread. Batching models get
    every request of a call in executions of up to max_batch_size rows."""

    def __init__(self, backends: Mapping[str, LoadedBackend], label: str) -> None:
        self._specs = {name: b.spec for name, b in backends.items()}
        self._instances = {name: b.new_instance(label) for name, b in backends.items()}
        self._timer = NullTimer()

    def close(self) -> None:
        for instance in self._instances.values():
            instance.close()

    def __call__(self, model: str, requests: Sequence[Tensors], wanted: Sequence[str]) -> list[Tensors]:
        spec, instance = self._specs[model], self._instances[model]
        outputs = [RequestedOutput(name) for name in wanted]
        infer = [InferRequest(model_name=model, inputs=dict(r), outputs=outputs) for r in requests]
        results: list[Tensors] = []
        for group in _row_groups(infer, spec.max_batch_size):
            for result in instance.execute(group, self._timer):
                if isinstance(result, PackserveError):
                    raise result
                results.append(result)
        return results


def _row_groups(requests: list[InferRequest], max_batch_size: int) -> list[list[InferRequest]]:
    """Consecutive requests packed into executions of at most max_batch_size rows (1 request per
    execution for models that do not batch)."""
    if max_batch_size <= 0:
        return [[r] for r in requests]
    groups: list[list[InferRequest]] = [[]]
    rows = 0
    for request in requests:
        count = request.batch_size(batching=True)
        if groups[-1] and rows + count > max_batch_size:
            groups.append([])
            rows = 0
        groups[-1].append(request)
        rows += count
    return groups


class PipelineExecutor:
    """The ensemble's steps (or the subset `only`) run over a list of images."""

    def __init__(
        self,
        ensemble: ModelSpec,
        specs: Mapping[str, ModelSpec],
        caller: ModelCaller,
        only: Sequence[str] | None = None,
    ) -> None:
        steps = [s for s in ensemble.ensemble_steps if only is None or s.model_name in only]
        # Ask each step only for what a selected step or the caller reads: a team's decode step
        # then computes its own inputs, not every branch's.
        consumed = {src for s in steps for src in s.input_map.values()} | {o.name for o in ensemble.outputs}
        self._steps = [(s, {o: t for o, t in s.output_map.items() if t in consumed}) for s in steps]
        self._specs = specs
        self._caller = caller
        self._input_name = ensemble.inputs[0].name

    def run(self, images: Sequence[bytes]) -> list[Tensors]:
        """Every ensemble tensor the steps produced, one dict per image."""
        values: list[Tensors] = [{self._input_name: np.array([[image]], dtype=object)} for image in images]
        for step, output_map in self._steps:
            requests = [{inp: v[src] for inp, src in step.input_map.items()} for v in values]
            spec = self._specs[step.model_name]
            wanted = list(output_map)
            if is_region_map(spec):
                outputs = self._region_map(spec, requests, wanted)
            else:
                outputs = self._caller(step.model_name, requests, wanted)
            for per_image, produced in zip(values, outputs, strict=True):
                for model_output, tensor_name in output_map.items():
                    per_image[tensor_name] = produced[model_output]
        return values

    def _region_map(
        self, spec: ModelSpec, requests: Sequence[Tensors], wanted: Sequence[str]
    ) -> list[Tensors]:
        params = parse_region_map(spec)
        target = self._specs[params.model]
        crops = [self._crops(spec, params, request) for request in requests]
        if len({c.shape[1:] for c in crops if len(c)}) > 1:  # keep-ratio crops of differing widths
            return [self._region_map(spec, [request], wanted)[0] for request in requests]
        counts = [len(c) for c in crops]
        target_wanted = [params.output_map[name] for name in wanted]
        gathered: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
        if sum(counts):
            every = np.concatenate([c for c in crops if len(c)], axis=0)
            step = max(1, target.max_batch_size)
            target_input = params.model_input or target.inputs[0].name
            chunks = [{target_input: every[i : i + step]} for i in range(0, len(every), step)]
            results = self._caller(params.model, chunks, target_wanted)
            for name, theirs in zip(wanted, target_wanted, strict=True):
                gathered[name] = [np.concatenate([r[theirs] for r in results], axis=0)]
        out: list[Tensors] = []
        start = 0
        for count in counts:
            out.append({name: _rows(spec, name, gathered[name], start, count) for name in wanted})
            start += count
        return out

    def _crops(self, spec: ModelSpec, params: RegionMapPlan, request: Tensors) -> np.ndarray:
        """The request's crops, cut by the region map's crop model as the server does."""
        image = np.asarray(request[params.image_input])
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3:
            raise InvalidArgumentError(
                f"region_map '{spec.name}' input '{params.image_input}': expected an HxWxC image, "
                f"got shape {list(image.shape)}"
            )
        raw = np.asarray(request[params.boxes_input], dtype=np.float32)
        width = int(raw.shape[-1]) if raw.ndim else 4
        regions: Tensors = {params.image_input: image, params.boxes_input: raw.reshape(-1, width)}
        if len(regions[params.boxes_input]) == 0:
            return np.zeros((0,), np.float32)
        if params.image_meta_input:
            regions[params.image_meta_input] = np.asarray(
                request[params.image_meta_input], np.float32
            ).reshape(-1)
        crop = self._specs[params.crop_model]
        if crop.batching:
            regions = {name: value[None] for name, value in regions.items()}
        name = crop_output_name(params, crop)
        crops = self._caller(params.crop_model, [regions], [name])[0][name]
        return np.asarray(crops[0] if crop.batching else crops)


def _rows(spec: ModelSpec, name: str, gathered: list[np.ndarray], start: int, count: int) -> np.ndarray:
    if gathered:
        return gathered[0][start : start + count]
    out = spec.output(name)
    if out is None:
        raise InvalidArgumentError(f"region_map '{spec.name}' has no output '{name}'")
    dims = tuple(max(d, 0) for d in out.dims[1:])
    return np.zeros((0, *dims), dtype=out.datatype.numpy)
