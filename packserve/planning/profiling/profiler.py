"""`packserve profile`: measure models through the real serving path.

The core engine runs in-process; for each model and instance count the profiler reloads the model
with that many instances (and no batching delay, so a request of b rows runs as one batch of b),
keeps `instances` requests in flight (closed loop) at each batch size, and reads the timings back
from the server's own statistics - the same per-request timing record metrics and clients see.
Ensembles are measured end to end with their composing models as configured.

Threading: everything runs on one asyncio event loop; the engine's instance threads do the work.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from packserve.backends.gpu_budget import BUDGET_PARAMETER
from packserve.backends.registry import load_backend
from packserve.config.loader import load_model_config
from packserve.config.region_map import region_map_callees
from packserve.core.engine import Engine, EngineOptions
from packserve.core.views import ModelStatistics
from packserve.errors import InvalidArgumentError, NotFoundError, PackserveError
from packserve.messages import InferRequest
from packserve.model_config_json import config_to_json
from packserve.model_spec import REGION_MAP_PLATFORM
from packserve.planning.formats.config_patch import patched_config_json
from packserve.planning.formats.profile_schema import (
    EnsembleStep,
    ModelProfile,
    Profile,
    ProfilePoint,
    ServedPoint,
)
from packserve.planning.profiling.device_memory import DeviceMemory, open_device_memory, parse_device
from packserve.planning.profiling.inputs import make_inputs
from packserve.planning.profiling.served import measure_served
from packserve.planning.profiling.traced_inputs import Tensors, batch_of, trace_ensemble_inputs

ProgressCallback = Callable[[str], None]  # called once per finished measurement, with its label
NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class ProfileOptions:
    model_repository: Path
    models: tuple[str, ...] = ()  # () = every model in the repository
    device: str = "cpu"  # "cpu" or "cuda:N"
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8)
    instances: tuple[int, ...] = (1, 2)
    requests_per_point: int = 100
    min_seconds_per_point: float = 0.5
    warmup_requests: int = 3
    # Image file sent for BYTES image inputs (a real photo, as clients send); None = a synthetic JPEG.
    sample_image: Path | None = None
    # Requests each ensemble is also served over HTTP for its served CPU per request (what serving
    # adds to the in-process cost); 0 = not measured. More than a profile point: the planner
    # charges the difference on every request, so its noise matters.
    served_requests: int = 60


def count_points(options: ProfileOptions, max_batch: dict[str, int], ensembles: set[str]) -> int:
    total = 0
    for name, limit in max_batch.items():
        sizes = len(_sizes(options.batch_sizes, limit))
        if name in ensembles:
            total += sizes + (1 if options.served_requests > 0 else 0)
        else:
            total += sizes * len(options.instances)
    return total


def _sizes(wanted: tuple[int, ...], max_batch_size: int) -> list[int]:
    return [b for b in wanted if b <= max(1, max_batch_size)] or [1]


async def run_profile(options: ProfileOptions, on_point: ProgressCallback | None = None) -> Profile:
    _check(options)
    # Before the engine starts: a GPU that is not there is refused in one line, and on one that is
    # memory is read from the device (every framework's allocations), not from one allocator.
    memory = open_device_memory(options.device)
    jpeg = _sample_jpeg(options)
    # A pipeline asked for by name brings every model it calls: they are what it costs.
    wanted = _with_callees(options.model_repository, options.models) if options.models else ("*",)
    engine = await Engine.start(EngineOptions(options.model_repository, "explicit", load_models=wanted))
    try:
        names = [e.name for e in engine.repository_index() if options.models == () or e.name in wanted]
        failed = [e for e in engine.repository_index() if e.name in names and e.state != "READY"]
        if failed:
            raise InvalidArgumentError(f"model '{failed[0].name}' did not load: {failed[0].reason}")
        samples = await _traced_samples(engine, names, jpeg)
        # Leaf models first; ensembles last, with every model they call back as configured.
        ordered = sorted(names, key=lambda n: (engine.model_spec(n).is_ensemble, n))
        models = [await _profile_model(engine, name, options, memory, samples, on_point) for name in ordered]
        return Profile(
            device=options.device,
            device_name=memory.device_name(),
            models=tuple(models),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            notes=f"packserve profile, {options.requests_per_point} requests per point",
            # On a GPU the host cores matter too: decode, protocol and post-processing run there.
            extra=({"cpu_cores": _cores()} if options.device == "cpu" else {"host_cores": _cores()})
            | _budgets(engine, names),
        )
    finally:
        await engine.shutdown(drain_timeout_s=5.0)


def _budgets(engine: Engine, names: list[str]) -> dict[str, Any]:
    """Each model's gpu_memory_budget parameter as configured, when any model has one."""
    budgets = {n: engine.model_spec(n).parameters.get(BUDGET_PARAMETER) for n in names}
    listed = {n: text for n, text in budgets.items() if text is not None}
    return {"gpu_memory_budgets": listed} if listed else {}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _sample_jpeg(options: ProfileOptions) -> bytes | None:
    if options.sample_image is None:
        return None
    try:
        return options.sample_image.read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(f"sample image '{options.sample_image}' cannot be read: {exc}") from exc


def _with_callees(repository: Path, models: tuple[str, ...]) -> tuple[str, ...]:
    """These models and every model they call (ensemble steps, per-region models), read from the
    repository's configs."""
    found: list[str] = []
    pending = list(models)
    while pending:
        name = pending.pop(0)
        if name in found:
            continue
        if not (repository / name).is_dir():
            raise InvalidArgumentError(f"model '{name}' is not in the repository {repository}")
        found.append(name)
        try:
            spec = load_model_config(repository / name, backends=load_backend).spec
        except PackserveError as exc:
            raise InvalidArgumentError(f"model '{name}' has an invalid config: {exc}") from exc
        pending.extend(step.model_name for step in spec.ensemble_steps)
        pending.extend(region_map_callees(spec))
    return tuple(found)


async def _traced_samples(engine: Engine, names: list[str], jpeg: bytes | None) -> dict[str, Tensors]:
    """One real request per ensemble, traced step by step: the inputs each called model sees."""
    samples: dict[str, Tensors] = {}
    for name in names:
        spec = engine.model_spec(name)
        if spec.is_ensemble:
            inputs = make_inputs(engine.model_metadata(name), 1, spec.batching, jpeg=jpeg)
            samples[name] = inputs
            for model, traced in (await trace_ensemble_inputs(engine, name, inputs)).items():
                samples.setdefault(model, traced)
    return samples


def _check(options: ProfileOptions) -> None:
    if not options.model_repository.is_dir():
        raise InvalidArgumentError(f"model repository '{options.model_repository}' is not a folder")
    parse_device(options.device)
    if options.served_requests < 0:
        raise InvalidArgumentError(f"served requests must be 0 or more, got {options.served_requests}")
    if options.requests_per_point < 1 or not options.batch_sizes or not options.instances:
        raise InvalidArgumentError(
            "profile needs at least one request, batch size and instance count per point"
        )


async def _profile_model(
    engine: Engine,
    name: str,
    options: ProfileOptions,
    memory: DeviceMemory,
    samples: dict[str, Tensors],
    on_point: ProgressCallback | None,
) -> ModelProfile:
    spec = engine.model_spec(name)
    original = config_to_json(engine.model_config(name))
    sizes = _sizes(options.batch_sizes, spec.max_batch_size)
    points: list[ProfilePoint] = []
    served: ServedPoint | None = None
    if spec.is_ensemble or spec.platform == REGION_MAP_PLATFORM:
        # The core runs these (no instances to vary). They hold no weights of their own; the
        # models they call are counted with their own memory.
        for batch in sizes:
            points.append(await _measure(engine, name, batch, 1, options, 0, samples))
            _report(on_point, name, batch, 1)
        if spec.is_ensemble and options.served_requests > 0:
            inputs = samples.get(name) or make_inputs(engine.model_metadata(name), 1, spec.batching)
            # As many requests in flight as cores: every core busy, the condition the planner
            # charges each model's CPU at, so the two are comparable.
            served = await measure_served(
                engine,
                name,
                inputs,
                options.served_requests,
                concurrency=_cores() if options.device == "cpu" else 1,
                warmup_requests=options.warmup_requests,
            )
            if on_point is not None:
                on_point(f"{name} served over HTTP")
    else:
        for instances in options.instances:
            await engine.unload_model(name)
            before = memory.used_bytes()
            config = _profiling_config(original, instances, options.device)
            await engine.load_model(name, config_json=json.dumps(config))
            await _drive(engine, name, sizes[-1], instances, options.warmup_requests, samples)
            loaded = max(0, memory.used_bytes() - before)
            for batch in sizes:
                points.append(await _measure(engine, name, batch, instances, options, loaded, samples))
                _report(on_point, name, batch, instances)
        # Leave the model as configured (on the profiled device) for the ensembles measured after it.
        await engine.load_model(name, config_json=json.dumps(on_device(original, options.device)))
    steps = tuple(
        EnsembleStep(s.model_name, tuple(s.input_map.values()), tuple(s.output_map.values()))
        for s in spec.ensemble_steps
    )
    if spec.platform == REGION_MAP_PLATFORM:
        steps = tuple(EnsembleStep(callee, (), ()) for callee in region_map_callees(spec))
    image_ms = None
    if spec.backend == "image":
        single = [p for p in points if p.batch_size == 1]
        image_ms = min(p.compute_ms for p in single) if single else None
    return ModelProfile(
        name, spec.platform, spec.backend, spec.max_batch_size, tuple(points), steps, image_ms, served
    )


def _report(on_point: ProgressCallback | None, name: str, batch: int, instances: int) -> None:
    if on_point is not None:
        on_point(f"{name} batch {batch} x{instances}")


def _instance_group(original: dict[str, Any], count: int, device: str) -> dict[str, Any]:
    """One instance group of `count` instances on the profiled device: KIND_GPU on GPU N for
    `cuda:N` (ONNX Runtime's CUDA provider, torch on that device, nvJPEG for image models), the
    model's own kind on `cpu` (KIND_CPU when it names none)."""
    ordinal = parse_device(device)
    if ordinal is not None:
        return {"count": count, "kind": "KIND_GPU", "gpus": [ordinal]}
    groups = original.get("instance_group") or []
    kind = str(groups[0].get("kind", "KIND_CPU")) if groups else "KIND_CPU"
    return {"count": count, "kind": "KIND_GPU" if kind == "KIND_GPU" else "KIND_CPU"} | (
        {"gpus": groups[0]["gpus"]} if kind == "KIND_GPU" and groups and groups[0].get("gpus") else {}
    )


def on_device(original: dict[str, Any], device: str) -> dict[str, Any]:
    """The model's config with its instances on the profiled device (unchanged on a CPU)."""
    if parse_device(device) is None or not original.get("instance_group"):
        return original
    count = sum(int(g.get("count", 1)) for g in original["instance_group"])
    return patched_config_json(original, {"instance_group": [_instance_group(original, count, device)]})


def _profiling_config(original: dict[str, Any], instances: int, device: str = "cpu") -> dict[str, Any]:
    patch: dict[str, Any] = {"instance_group": [_instance_group(original, instances, device)]}
    if original.get("dynamic_batching") is not None:
        # No waiting: a request of b rows runs at once, as one batch of b.
        patch["dynamic_batching"] = {"max_queue_delay_microseconds": 0}
    return patched_config_json(original, patch)


async def _drive(
    engine: Engine, name: str, batch: int, concurrency: int, count: int, samples: dict[str, Tensors]
) -> list[float]:
    """Closed loop: `concurrency` clients each send the next request when the last one returns."""
    spec = engine.model_spec(name)
    batching = spec.batching
    sample = samples.get(name)
    inputs = (
        batch_of(sample, batch, batching)
        if sample is not None
        else make_inputs(engine.model_metadata(name), batch, batching)
    )
    latencies_ms: list[float] = []
    remaining = count

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter_ns()
            await engine.infer(InferRequest(model_name=name, inputs=dict(inputs)))
            latencies_ms.append((time.perf_counter_ns() - start) / NS_PER_MS)

    try:
        await asyncio.gather(*(client() for _ in range(concurrency)))
    except PackserveError as exc:
        raise InvalidArgumentError(f"model '{name}' failed at batch size {batch}: {exc}") from exc
    return latencies_ms


async def _measure(
    engine: Engine,
    name: str,
    batch: int,
    instances: int,
    options: ProfileOptions,
    memory_bytes: int,
    samples: dict[str, Tensors],
) -> ProfilePoint:
    await _drive(engine, name, batch, instances, options.warmup_requests, samples)
    before = _stats(engine, name)
    cpu_before = time.process_time()
    start = time.perf_counter()
    latencies: list[float] = []
    while (
        len(latencies) < options.requests_per_point
        or time.perf_counter() - start < options.min_seconds_per_point
    ):
        latencies += await _drive(
            engine, name, batch, instances, max(instances, options.requests_per_point // 4), samples
        )
    elapsed = time.perf_counter() - start
    # Every thread of this process: the engine's instance workers, the event loop, the batchers.
    cpu_ms = (time.process_time() - cpu_before) * 1000.0 / len(latencies)
    after = _stats(engine, name)
    count = max(1, after.inference_stats.success.count - before.inference_stats.success.count)

    def mean_ms(field: str) -> float:
        delta = getattr(after.inference_stats, field).ns - getattr(before.inference_stats, field).ns
        return delta / count / NS_PER_MS

    return ProfilePoint(
        batch_size=batch,
        instances=instances,
        concurrency=instances,
        throughput_per_s=len(latencies) * batch / elapsed,
        latency_p50_ms=float(np.percentile(latencies, 50)),
        latency_p99_ms=float(np.percentile(latencies, 99)),
        queue_ms=mean_ms("queue"),
        compute_input_ms=mean_ms("compute_input"),
        compute_infer_ms=mean_ms("compute_infer"),
        compute_output_ms=mean_ms("compute_output"),
        memory_bytes=memory_bytes,
        cpu_ms=cpu_ms,
    )


def _stats(engine: Engine, name: str) -> ModelStatistics:
    try:
        return engine.model_statistics(name)[-1]
    except NotFoundError as exc:
        raise InvalidArgumentError(f"model '{name}' has no statistics: {exc}") from exc
