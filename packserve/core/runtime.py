"""A loaded model version: its spec, its backend objects and its one scheduler.

Loading a backend model's weights and instances (`load_backend_instances`) runs on a loader
thread, since reading weights is slow and must not block the event loop; its scheduler is made on
the loop (`backend_runtime`). Composite models (ensemble, region map) need no thread.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packserve.backends.base import BackendModel, InstanceContext, ModelContext
from packserve.backends.limits import execution_limits
from packserve.backends.registry import load_backend
from packserve.core.bls import EngineBls
from packserve.core.clock import Clock
from packserve.core.cpu_slots import CpuSlots
from packserve.core.dispatch import Dispatcher
from packserve.core.ensemble import EnsembleScheduler
from packserve.core.instances import InstancePool
from packserve.core.observer import InferenceObserver
from packserve.core.region_map import RegionMapScheduler
from packserve.core.scheduler import Scheduler, create_scheduler
from packserve.core.validation import RequestValidator
from packserve.core.warmup import run_warmup
from packserve.errors import ModelLoadError, PackserveError
from packserve.messages import RequestTiming
from packserve.model_spec import REGION_MAP_PLATFORM, ModelSpec

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

    from packserve.config.region_map import RegionMapPlan


# How long an unload waits for instance threads once the drain is over and running batches were
# interrupted; a thread still in a hung in-process model is left behind (daemon) after that.
POOL_JOIN_TIMEOUT_S = 1.0


@dataclass
class ModelRuntime:
    spec: ModelSpec
    config: ModelConfig
    version: int
    scheduler: Scheduler
    load_seconds: float
    backend_model: BackendModel | None = None
    pool: InstancePool | None = None
    version_str: str = field(init=False)
    validator: RequestValidator = field(init=False)
    # model_warmup executions, reported to the statistics once the version is loaded.
    warmup_executions: list[tuple[int, RequestTiming]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.version_str = str(self.version)
        self.validator = RequestValidator(self.spec)

    async def close(self, drain_timeout_s: float) -> None:
        await self.scheduler.close(drain_timeout_s)
        # Joining worker threads and freeing weights can block: keep it off the event loop. The
        # drain is over: a batch still executing now is stopped (isolated) or left behind.
        if self.pool is not None:
            await asyncio.to_thread(self.pool.close, POOL_JOIN_TIMEOUT_S)
        if self.backend_model is not None:
            await asyncio.to_thread(self.backend_model.close)


@dataclass(frozen=True)
class RuntimeDeps:
    """What a runtime is built with, besides its config."""

    repository: Path
    observer: InferenceObserver
    dispatcher: Dispatcher
    clock: Clock
    max_pending: int
    inline_threshold_ns: int = 0  # see core/inline_policy.py
    cpu_slots: CpuSlots | None = None  # the CPU execution-slot budget (core/cpu_slots.py); None = off
    response_cache: bool = False  # the server has a response cache (--cache-config)


def is_composite(spec: ModelSpec) -> bool:
    """Models the core runs itself by calling other models, rather than a backend."""
    return spec.is_ensemble or spec.platform == REGION_MAP_PLATFORM


def build_composite_runtime(
    spec: ModelSpec,
    config: ModelConfig,
    version: int,
    deps: RuntimeDeps,
    region_map: RegionMapPlan | None = None,
) -> ModelRuntime:
    started = time.perf_counter()
    scheduler: Scheduler
    if spec.is_ensemble:
        scheduler = EnsembleScheduler(
            spec, str(version), deps.dispatcher, deps.observer, deps.clock, deps.max_pending
        )
    elif region_map is not None:
        scheduler = RegionMapScheduler(
            region_map, spec, str(version), deps.dispatcher, deps.observer, deps.clock, deps.max_pending
        )
    else:
        raise ModelLoadError(f"region_map model '{spec.name}' was loaded without its parsed parameters")
    return ModelRuntime(spec, config, version, scheduler, time.perf_counter() - started)


@dataclass(frozen=True)
class LoadedBackend:
    """A backend model with its instances running, before it has a scheduler."""

    backend_model: BackendModel
    pool: InstancePool
    load_seconds: float
    warmup: list[tuple[int, RequestTiming]] = field(default_factory=list)  # (rows, timing) each


def load_backend_instances(
    spec: ModelSpec,
    config: ModelConfig,
    version: int,
    deps: RuntimeDeps,
    loop: asyncio.AbstractEventLoop | None = None,
) -> LoadedBackend:
    """Load weights and create instances. Runs on a loader thread; `backend_runtime` then makes the
    scheduler on the event loop, because asyncio objects belong to the loop. `loop` (the server's)
    lets the model call other models (BLS)."""
    started = time.perf_counter()
    limits = execution_limits(spec)
    model_dir = deps.repository / spec.name
    context = ModelContext(
        spec=spec,
        config=config,
        repository=deps.repository,
        model_dir=model_dir,
        version=version,
        version_dir=model_dir / str(version),
        bls=EngineBls(deps.dispatcher, loop, spec.name, deps.cpu_slots) if loop is not None else None,
    )
    backend_cls = load_backend(spec.backend)
    try:
        backend_model = backend_cls(context)
    except PackserveError:
        raise
    except Exception as exc:  # a backend may fail in any way while reading a file
        raise ModelLoadError(f"model '{spec.name}' version {version} failed to load: {exc}") from exc
    instances = []
    names: list[str] = []
    on_cpu: list[bool] = []
    try:
        for group_index, group in enumerate(spec.instance_groups):
            devices = group.gpus or (0,)
            for index in range(group.count * (len(group.gpus) if group.gpus else 1)):
                instance = InstanceContext(
                    name=f"{spec.name}_{group_index}_{index}",
                    kind="KIND_GPU" if group.kind == "KIND_GPU" else "KIND_CPU",
                    device_id=devices[index % len(devices)] if group.kind == "KIND_GPU" else 0,
                )
                instances.append(backend_model.create_instance(instance))
                names.append(instance.name)
                on_cpu.append(instance.kind == "KIND_CPU")
        # READY only after warmup, as in Triton; a failing sample fails the load with its reason.
        warmup = run_warmup(spec, config, model_dir, instances, deps.clock)
    except Exception as exc:
        for created in instances:
            created.close()
        backend_model.close()
        if isinstance(exc, PackserveError):
            raise
        raise ModelLoadError(
            f"model '{spec.name}' version {version}: creating instances failed: {exc}"
        ) from exc
    pool = InstancePool(
        spec.name,
        instances,
        batching=spec.batching,
        names=names,
        clock=deps.clock,
        # A batch with a deadline never runs on the event loop: a hung model would stop it.
        inline_threshold_ns=0 if limits.execution_timeout_s else deps.inline_threshold_ns,
        execution_timeout_s=limits.execution_timeout_s,
        cpu_slots=deps.cpu_slots,
        on_cpu=on_cpu,
    )
    return LoadedBackend(backend_model, pool, time.perf_counter() - started, warmup)


# Queued work per instance, in batches, before a new request is refused (503) by default.
DEFAULT_QUEUE_BATCHES_PER_INSTANCE = 4
# Never fewer pending requests than this by default: a few dozen closed-loop clients still fit.
MIN_DEFAULT_QUEUE = 64


def admission_bound(spec: ModelSpec, instances: int, ceiling: int) -> int:
    """How many requests a backend model holds (waiting + executing) before it answers 503.

    Without a bound, overload queues thousands deep: every admitted request waits seconds and the
    refusals come late. So when the config sets no `max_queue_size`, the bound follows what the
    model can work off quickly: a few batches per instance (never under MIN_DEFAULT_QUEUE, never
    over the server's `ceiling`). A config's `max_queue_size` governs the waiting queue itself
    (the dynamic batcher enforces it); then only the server's ceiling applies here.
    """
    batching = spec.dynamic_batching
    if batching is not None and (
        batching.default_queue_policy.max_queue_size > 0
        or any(p.max_queue_size > 0 for p in batching.priority_queue_policy.values())
    ):
        return ceiling
    derived = DEFAULT_QUEUE_BATCHES_PER_INSTANCE * max(1, instances) * max(1, spec.max_batch_size)
    return min(ceiling, max(MIN_DEFAULT_QUEUE, derived))


def backend_runtime(
    spec: ModelSpec, config: ModelConfig, version: int, loaded: LoadedBackend, deps: RuntimeDeps
) -> ModelRuntime:
    """The runtime of a loaded backend model, with its one scheduler. Call it on the event loop."""
    bound = admission_bound(spec, loaded.pool.size, deps.max_pending)
    scheduler = create_scheduler(spec, str(version), loaded.pool, deps.observer, deps.clock, bound)
    runtime = ModelRuntime(
        spec, config, version, scheduler, loaded.load_seconds, loaded.backend_model, loaded.pool
    )
    runtime.warmup_executions = loaded.warmup
    return runtime
