"""The raw limit: a model's own backend driven in-process, with no server, queue or codec.

The model is loaded exactly as the server loads it (config loader -> backend registry ->
`BackendModel(ModelContext)` -> one `create_instance` per configured instance), and every instance
is driven by a thread of its own, as the server's instance workers do. A batch of size B is B
single-row requests - what the dynamic batcher hands the backend when perf_analyzer sends one row per
request - so the backend's gather and split costs are counted as in serving.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.suite.results import RawLimit, RawPoint
from packserve.backends.base import (
    BackendInstance,
    BackendModel,
    ExecutionTimer,
    InstanceContext,
    ModelContext,
)
from packserve.backends.registry import load_backend
from packserve.config.loader import load_model_config
from packserve.core.validation import validate_request
from packserve.errors import InvalidArgumentError, ModelExecutionError, PackserveError
from packserve.messages import InferRequest
from packserve.model_spec import ModelSpec, TensorSpec
from packserve.types import DataType


@dataclass(frozen=True, slots=True)
class RawOptions:
    # Each batch size is timed in several short windows and the best kept: other processes on the
    # machine can only slow a window down, so the best window is the closest to the backend's limit.
    window_seconds: float = 0.5
    windows: int = 3
    warmup_executions: int = 2  # per instance, before any batch size is timed
    # input name -> dims without the batch dimension, for inputs whose config has -1 dimensions
    shapes: Mapping[str, tuple[int, ...]] | None = None
    seed: int = 0


class _NoTimer(ExecutionTimer):
    """Phase marks are not needed here: the whole execute call is timed from outside."""

    def inputs_ready(self) -> None:
        return None

    def infer_done(self) -> None:
        return None


def composite_reason(spec: ModelSpec) -> str | None:
    """Why a model has no raw limit of its own (it only calls other models), or None."""
    if spec.is_ensemble:
        return "ensemble: its steps are other models, measure those"
    if not spec.backend:
        return f"platform '{spec.platform}' is run by the core, not a backend"
    return None


def measure_raw_limit(repository: Path, model: str, options: RawOptions) -> RawLimit:
    """Rows/s of `model` at every batch size 1..max_batch_size (1 for a model that does not batch)."""
    loaded = load_model_config(repository / model, backends=load_backend)
    spec = loaded.spec
    reason = composite_reason(spec)
    if reason is not None:
        raise InvalidArgumentError(f"model '{model}' has no raw limit: {reason}")
    version = loaded.versions[-1]
    model_dir = repository / model
    context = ModelContext(
        spec=spec,
        config=loaded.config,
        repository=repository,
        model_dir=model_dir,
        version=version,
        version_dir=model_dir / str(version),
    )
    backend_model = load_backend(spec.backend)(context)
    instances = _create_instances(backend_model, spec)
    try:
        rng = np.random.default_rng(options.seed)
        row_inputs = synthetic_row(spec, options.shapes or {}, rng)
        largest = max(1, spec.max_batch_size)
        points = []
        for index, batch_size in enumerate(range(1, largest + 1)):
            requests = _batch(spec, row_inputs, batch_size)
            warmup = options.warmup_executions if index == 0 else 1
            for instance in instances:
                for _ in range(warmup):
                    _execute_checked(spec.name, instance, requests)
            points.append(
                max(
                    (
                        _timed_point(spec.name, instances, requests, batch_size, options.window_seconds)
                        for _ in range(max(1, options.windows))
                    ),
                    key=lambda point: point.rows_per_s,
                )
            )
        return RawLimit(model=spec.name, backend=spec.backend, instances=len(instances), points=tuple(points))
    finally:
        for instance in instances:
            instance.close()
        backend_model.close()


def _create_instances(backend_model: BackendModel, spec: ModelSpec) -> list[BackendInstance]:
    """One instance per configured instance, named and placed as packserve's runtime does."""
    instances: list[BackendInstance] = []
    for group_index, group in enumerate(spec.instance_groups):
        devices = group.gpus or (0,)
        for index in range(group.count * (len(group.gpus) if group.gpus else 1)):
            gpu = group.kind == "KIND_GPU"
            context = InstanceContext(
                name=f"{spec.name}_{group_index}_{index}",
                kind="KIND_GPU" if gpu else "KIND_CPU",
                device_id=devices[index % len(devices)] if gpu else 0,
            )
            instances.append(backend_model.create_instance(context))
    if not instances:
        instances.append(backend_model.create_instance(InstanceContext(f"{spec.name}_0_0", "KIND_CPU", 0)))
    return instances


def synthetic_row(
    spec: ModelSpec, shapes: Mapping[str, tuple[int, ...]], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One row of random data per required input (batch dimension of 1 included for batching models)."""
    unknown = sorted(set(shapes) - {t.name for t in spec.inputs})
    if unknown:
        raise InvalidArgumentError(
            f"model '{spec.name}' has no input(s) {', '.join(unknown)} to give a shape to"
        )
    batching = spec.max_batch_size > 0
    row = {}
    for tensor in spec.inputs:
        if tensor.optional:
            continue
        dims = _concrete_dims(spec.name, tensor, shapes.get(tensor.name))
        shape = (1, *dims) if batching else dims
        row[tensor.name] = random_tensor(tensor.datatype, shape, rng)
    return row


def random_tensor(datatype: DataType, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if datatype is DataType.BYTES:
        count = int(np.prod(shape, dtype=np.int64))
        values = [bytes(rng.integers(97, 123, size=8, dtype=np.uint8)) for _ in range(count)]
        return np.array(values, dtype=np.object_).reshape(shape)
    if datatype is DataType.BOOL:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    dtype = datatype.numpy
    if dtype.kind in ("i", "u"):
        # Small values: add/sub graphs like `simple` must not overflow.
        return rng.integers(0, 64, size=shape).astype(dtype)
    return rng.random(size=shape, dtype=np.float32).astype(dtype)


def _concrete_dims(model: str, tensor: TensorSpec, given: tuple[int, ...] | None) -> tuple[int, ...]:
    if given is not None:
        if len(given) != len(tensor.dims) or any(
            d != g for d, g in zip(tensor.dims, given, strict=True) if d >= 0
        ):
            raise InvalidArgumentError(
                f"model '{model}' input '{tensor.name}': shape {list(given)} does not fit the config dims "
                f"{list(tensor.dims)}"
            )
        return given
    if any(d < 0 for d in tensor.dims):
        raise InvalidArgumentError(
            f"model '{model}' input '{tensor.name}' has variable dims {list(tensor.dims)}; "
            f"give them with --shape {model}/{tensor.name}:D1,D2,..."
        )
    return tensor.dims


def _batch(spec: ModelSpec, row_inputs: Mapping[str, np.ndarray], batch_size: int) -> list[InferRequest]:
    """`batch_size` one-row requests, validated (and reshaped) as the core does before batching."""
    requests = []
    for index in range(batch_size):
        request = InferRequest(model_name=spec.name, inputs=dict(row_inputs), id=str(index))
        validate_request(spec, request)
        requests.append(request)
    return requests


def _execute_checked(model: str, instance: BackendInstance, requests: Sequence[InferRequest]) -> None:
    results = instance.execute(requests, _NoTimer())
    if len(results) != len(requests):
        raise ModelExecutionError(f"model '{model}': {len(requests)} requests gave {len(results)} results")
    for result in results:
        if isinstance(result, PackserveError):
            raise ModelExecutionError(f"model '{model}' failed on synthetic input: {result}") from result


def _timed_point(
    model: str,
    instances: Sequence[BackendInstance],
    requests: Sequence[InferRequest],
    batch_size: int,
    seconds: float,
) -> RawPoint:
    """Every instance executes the batch in a loop on its own thread for `seconds`."""
    start = threading.Barrier(len(instances) + 1)
    counts = [0] * len(instances)
    busy_s = [0.0] * len(instances)
    failures: list[BaseException] = []

    def drive(slot: int, instance: BackendInstance) -> None:
        try:
            start.wait()
            deadline = time.perf_counter() + seconds
            while True:
                began = time.perf_counter()
                _execute_checked(model, instance, requests)
                ended = time.perf_counter()
                counts[slot] += 1
                busy_s[slot] += ended - began
                if ended >= deadline:
                    return
        except BaseException as exc:  # re-raised on the calling thread below
            failures.append(exc)

    threads = [
        threading.Thread(target=drive, args=(i, inst), daemon=True) for i, inst in enumerate(instances)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise failures[0]
    executions = sum(counts)
    return RawPoint(
        batch_size=batch_size,
        rows_per_s=executions * batch_size / elapsed,
        executions=executions,
        mean_execute_ms=1000.0 * sum(busy_s) / executions,
    )
