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
from packserve.core.admission import admission_bound
from packserve.core.bls import EngineBls
from packserve.core.clock import Clock
from packserve.core.cpu_slots import CpuSlots
from packserve.core.dispatch import Dispatcher
from packserve.core.ensemble import EnsembleScheduler
from packserve.core.gpu_load_limit import GpuLoadLimits
from packserve.core.instances import InstancePool
from packserve.core.observer import InferenceObserver
from packserve.core.region_map import RegionMapScheduler
from packserve.core.scheduler import Scheduler, create_scheduler
from packserve.core.validation import RequestValidator
from packserve.core.warmup import run_warmup
from packserve.errors import ModelLoadError, PackserveError
from packserve.messages import RequestTiming
from packserve.model_spec import REGION_MAP_PLATFORM, InstanceGroupSpec, InstanceKind, ModelSpec

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
    max_pending: int  # the server's bound per model version (core/admission.py)
    inline_threshold_ns: int = 0  # see core/inline_policy.py
    cpu_slots: CpuSlots | None = None  # the CPU execution-slot budget (core/cpu_slots.py); None = off
    response_cache: bool = False  # the server has a response cache (--cache-config)
    gpu_load_limits: GpuLoadLimits = field(default_factory=GpuLoadLimits)  # --model-load-gpu-limit


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
            spec,
            version=str(version),
            dispatcher=deps.dispatcher,
            observer=deps.observer,
            clock=deps.clock,
            max_pending=deps.max_pending,
        )
    elif region_map is not None:
        scheduler = RegionMapScheduler(
            region_map,
            spec,
            version=str(version),
            dispatcher=deps.dispatcher,
            observer=deps.observer,
            clock=deps.clock,
            max_pending=deps.max_pending,
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
    deps.gpu_load_limits.check(spec.name, gpu_device_ids(spec))  # before anything is allocated
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
            devices = _gpus(group)
            for index in range(group.count * (len(group.gpus) if group.gpus else 1)):
                on_gpu = group.kind == InstanceKind.GPU
                instance = InstanceContext(
                    name=f"{spec.name}_{group_index}_{index}",
                    # A KIND_MODEL group's instances run as CPU ones.
                    kind=InstanceKind.GPU if on_gpu else InstanceKind.CPU,
                    device_id=devices[index % len(devices)] if on_gpu else 0,
                )
                instances.append(backend_model.create_instance(instance))
                names.append(instance.name)
                on_cpu.append(not on_gpu)
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


def _gpus(group: InstanceGroupSpec) -> tuple[int, ...]:
    """The GPUs a group's instances are spread over: its `gpus`, GPU 0 when it lists none."""
    return group.gpus or (0,)


def gpu_device_ids(spec: ModelSpec) -> list[int]:
    """The GPUs this model's instances go on (instance_group kind GPU)."""
    return [
        device for group in spec.instance_groups if group.kind == InstanceKind.GPU for device in _gpus(group)
    ]


def backend_runtime(
    spec: ModelSpec, config: ModelConfig, version: int, loaded: LoadedBackend, deps: RuntimeDeps
) -> ModelRuntime:
    """The runtime of a loaded backend model, with its one scheduler. Call it on the event loop."""
    bound = admission_bound(spec, loaded.pool.size, deps.max_pending)
    scheduler = create_scheduler(
        spec,
        version=str(version),
        pool=loaded.pool,
        observer=deps.observer,
        clock=deps.clock,
        max_pending=bound,
    )
    runtime = ModelRuntime(
        spec, config, version, scheduler, loaded.load_seconds, loaded.backend_model, loaded.pool
    )
    runtime.warmup_executions = loaded.warmup
    return runtime
