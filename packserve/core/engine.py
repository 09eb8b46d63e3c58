"""The engine: the only door from the front ends into the core.

Ownership: `infer` takes the request from the front end, validates it against its model's spec
before it may join a queue (so a bad request never harms a batch), hands it to that model's one
scheduler and returns the response to the caller. Runs on the event loop; models execute on their
instances' worker threads underneath.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packserve import SERVER_NAME, __version__
from packserve.config.loader import ConfigLoadOptions
from packserve.core.admission import DEFAULT_MAX_PENDING
from packserve.core.classification import shape_outputs
from packserve.core.clock import Clock, MonotonicClock
from packserve.core.cpu_slots import CpuSlots, resolve_slot_count
from packserve.core.engine_api import DEFAULT_DRAIN_TIMEOUT_S
from packserve.core.gpu_load_limit import GpuLoadLimits
from packserve.core.memory_guard import MemoryGuard
from packserve.core.observer import InferenceObserver
from packserve.core.observer_fanout import ObserverFanout
from packserve.core.repository import ModelRepository
from packserve.core.response_cache import CachedResponses, ResponseCache
from packserve.core.runtime import ModelRuntime, RuntimeDeps
from packserve.core.shared_memory import SharedMemoryRegistry
from packserve.core.statistics import StatisticsCollector
from packserve.core.trace_export import make_exporter
from packserve.core.tracing import TraceControl, TraceRecord, TraceSettings, unknown_model
from packserve.core.views import (
    IndexEntry,
    ModelMetadata,
    ModelState,
    ModelStatistics,
    ServerMetadata,
    TensorMetadata,
)
from packserve.errors import (
    InvalidArgumentError,
    ModelExecutionError,
    NotFoundError,
    PackserveError,
    ServerShuttingDownError,
    UnavailableError,
)
from packserve.messages import InferRequest, InferResponse
from packserve.model_spec import ModelSpec

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

log = logging.getLogger("packserve.engine")

MODEL_CONTROL_MODES = ("none", "explicit", "poll")
# Protocol extensions this server implements (reported by GET /v2 and ServerMetadata).
EXTENSIONS = (
    "classification",
    "model_repository",
    "model_repository(unload_dependents)",
    "schedule_policy",
    "model_configuration",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "trace",
    "system_shared_memory",
)


@dataclass(frozen=True)
class EngineOptions:
    model_repository: Path
    model_control_mode: str = "none"  # Triton's --model-control-mode
    load_models: tuple[str, ...] = ()  # explicit mode: models to load at startup ("*" = all)
    poll_interval_s: float = 15.0  # poll mode: how often the repository is rescanned
    max_pending_per_model: int = DEFAULT_MAX_PENDING  # admission bound when a model's config sets none
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    # Batches measured cheaper than this run on the event-loop thread (core/inline_policy.py);
    # 0 keeps every batch on its instance's worker thread.
    inline_execution_us: int = 300
    # Batches computing on the CPU at once, shared by every CPU instance (core/cpu_slots.py):
    # -1 = one per usable core, 0 = no budget (every worker computes whenever it has a batch).
    cpu_execution_slots: int = -1
    # Triton's flags of the same meaning (cli/triton_flags.py; docs/triton-flags.md).
    more_repositories: tuple[Path, ...] = ()  # --model-repository given more than once
    server_id: str = SERVER_NAME  # --id: the name in server metadata
    strict_readiness: bool = False  # --strict-readiness: ready only while every model is
    config_options: ConfigLoadOptions = field(default_factory=ConfigLoadOptions)
    model_load_concurrency: int = 4  # --model-load-thread-count
    trace: TraceSettings = field(default_factory=TraceSettings)  # --trace-config
    # Triton's --cache-config local,size=N: bytes of the response cache; 0 = no cache.
    response_cache_bytes: int = 0
    # --max-memory: above this resident memory (workers included) new requests get a 503; 0 = off.
    max_memory_bytes: int = 0
    # --model-load-gpu-limit: GPU id -> fraction of its memory in use above which loads are refused.
    gpu_load_limits: GpuLoadLimits = field(default_factory=GpuLoadLimits)


class Engine:
    def __init__(
        self,
        options: EngineOptions,
        clock: Clock | None = None,
        observers: Sequence[InferenceObserver] = (),
    ) -> None:
        if options.model_control_mode not in MODEL_CONTROL_MODES:
            raise ValueError(
                f"model control mode '{options.model_control_mode}' is not one of {MODEL_CONTROL_MODES}"
            )
        self.options = options
        self._clock = clock or MonotonicClock()
        self.statistics = StatisticsCollector()
        self._observers = ObserverFanout([self.statistics, *observers])
        slot_count = resolve_slot_count(options.cpu_execution_slots)
        self.cpu_slots = CpuSlots(slot_count) if slot_count else None
        deps = RuntimeDeps(
            repository=options.model_repository,
            observer=self._observers,
            dispatcher=self,
            clock=self._clock,
            max_pending=options.max_pending_per_model,
            inline_threshold_ns=options.inline_execution_us * 1000,
            cpu_slots=self.cpu_slots,
            response_cache=options.response_cache_bytes > 0,
            gpu_load_limits=options.gpu_load_limits,
        )
        self.repository = ModelRepository(
            [options.model_repository, *options.more_repositories],
            deps,
            options.drain_timeout_s,
            options.config_options,
            options.model_load_concurrency,
        )
        # Clients' system shared-memory regions (front ends read inputs from and write outputs to them).
        self.shared_memory = SharedMemoryRegistry()
        cache_bytes = options.response_cache_bytes
        self.response_cache = (
            CachedResponses(ResponseCache(cache_bytes), self._clock, self._observers) if cache_bytes else None
        )
        self._draining = False
        self._withdrawn = False  # SIGTERM: not ready, yet still serving until the listeners close
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._poll_task: asyncio.Task[None] | None = None
        self.tracing = TraceControl(options.trace, make_exporter(options.trace))
        self._memory_guard = MemoryGuard(options.max_memory_bytes)

    @classmethod
    async def start(
        cls,
        options: EngineOptions,
        clock: Clock | None = None,
        observers: Sequence[InferenceObserver] = (),
    ) -> Engine:
        """Create the engine and load the startup models (failures are recorded, not raised).
        `observers` hear every event from the first load on (metrics need the load times)."""
        engine = cls(options, clock, observers)
        await engine._load_startup_models()
        if options.model_control_mode == "poll":
            engine._poll_task = asyncio.create_task(engine._poll_forever())
        return engine

    async def _load_startup_models(self) -> None:
        names = self.repository.scan()
        if self.options.model_control_mode == "explicit":
            wanted = self.options.load_models
            names = names if "*" in wanted else list(wanted)
        await self.repository.load_all(names)

    # ---- health and metadata -------------------------------------------------------------
    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(self.options.server_id, __version__, EXTENSIONS)

    def is_live(self) -> bool:
        return True

    def is_ready(self) -> bool:
        if self._draining or self._withdrawn:
            return False
        if self.options.strict_readiness:
            # As Triton: every model that was asked for (not merely present and unloaded) is READY.
            # A name found in two repositories is never loaded, so Triton does not count it either.
            # READY rows pass first, so the duplicate check (a stat per repository) runs only for
            # the rows that are not: a probe of a ready server does no per-model file work.
            roots = self.repository.roots
            return all(
                e.state == ModelState.READY
                or e.reason == "unloaded"
                or roots.duplicate_reason(e.name) is not None
                for e in self.repository.index()
            )
        return True

    def withdraw_readiness(self) -> None:
        """Answer not-ready from now on but keep taking requests, so a load balancer stops routing
        here before anything is refused (the first step of a graceful shutdown)."""
        self._withdrawn = True

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.repository.runtime(name, version)
        except PackserveError:
            return False
        return self.repository.entry(name).state == ModelState.READY

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        runtime = self.repository.runtime(name, version)
        spec = runtime.spec
        batch = (-1,) if spec.batching else ()
        entry = self.repository.entry(name)
        versions = (runtime.version_str,) if version else tuple(str(v) for v in sorted(entry.runtimes))
        return ModelMetadata(
            name=spec.name,
            versions=versions,
            platform=spec.platform or spec.backend,
            inputs=tuple(TensorMetadata(t.name, t.datatype, batch + t.dims) for t in spec.inputs),
            outputs=tuple(TensorMetadata(t.name, t.datatype, batch + t.dims) for t in spec.outputs),
        )

    def model_spec(self, name: str) -> ModelSpec:
        return self.repository.runtime(name).spec

    def model_config(self, name: str, version: str = "") -> ModelConfig:
        return self.repository.runtime(name, version).config

    def model_statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        if name:
            runtimes = [self.repository.runtime(name, version)] if version else self._ready_runtimes(name)
            if not runtimes:
                raise NotFoundError(f"requested model '{name}' is not available")
        else:
            runtimes = [r for n in self.repository.names() for r in self._ready_runtimes(n)]
        return [self.statistics.snapshot(r.spec.name, r.version_str) for r in runtimes]

    def _ready_runtimes(self, name: str) -> list[ModelRuntime]:
        entry = self.repository.find(name)
        return [entry.runtimes[v] for v in sorted(entry.runtimes)] if entry is not None else []

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        return self.repository.index(ready_only)

    # ---- trace extension -------------------------------------------------------------------
    def trace_setting(self, model: str = "") -> dict[str, Any]:
        self._check_trace_model(model)
        return self.tracing.settings(model).as_strings()

    def update_trace_setting(self, model: str, changes: dict[str, Any]) -> dict[str, Any]:
        self._check_trace_model(model)
        return self.tracing.update(model, changes).as_strings()

    def _check_trace_model(self, model: str) -> None:
        if model and self.repository.find(model) is None and not self.repository.roots.exists(model):
            raise unknown_model(model)

    # ---- repository control --------------------------------------------------------------
    def _check_explicit(self, action: str) -> None:
        if self.options.model_control_mode != "explicit":
            # Triton's words (2.51), in NONE mode as in POLL mode.
            raise UnavailableError(f"explicit model {action} is not allowed if polling is enabled")

    async def load_model(
        self, name: str, config_json: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        self._check_explicit("load / unload")
        if files:
            raise InvalidArgumentError("loading a model from uploaded files is not supported")
        await self.repository.load(name, config_json)

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        self._check_explicit("load / unload")
        await self.repository.unload(name, unload_dependents)

    # ---- inference -----------------------------------------------------------------------
    async def infer(self, request: InferRequest) -> InferResponse:
        timing = request.timing
        timing.received_ns = self._clock.now_ns()
        if self._draining:
            raise ServerShuttingDownError("server is shutting down and takes no new requests")
        self._memory_guard.admit()
        trace = self.tracing.begin(request.model_name)
        if trace is None:
            return await self._infer(request)
        try:
            return await self._infer(request)
        except Exception as exc:
            trace.error = str(exc)
            raise
        finally:
            self._end_trace(trace, request)

    def _end_trace(self, trace: TraceRecord, request: InferRequest) -> None:
        trace.timing, trace.request_id = request.timing, request.id
        entry = self.repository.find(request.model_name)
        latest = entry.latest if entry is not None else None
        trace.version = request.model_version or (latest.version_str if latest is not None else "")
        if "TENSORS" in self.tracing.settings(request.model_name).level:
            for name, tensor in request.inputs.items():
                trace.tensors[name] = f"{getattr(tensor, 'dtype', '?')}{list(getattr(tensor, 'shape', ()))}"
        self.tracing.end(trace)

    async def _infer(self, request: InferRequest) -> InferResponse:
        timing = request.timing
        runtime = self.repository.runtime(request.model_name, request.model_version)
        spec = runtime.spec
        self._in_flight += 1
        self._idle.clear()
        cache = self.response_cache if spec.response_cache else None
        cache_key: bytes | None = None
        try:
            runtime.validator.validate(request)
            if cache is not None:
                cache_key, cached = cache.lookup(spec.name, runtime.version_str, request)
                if cached is not None:
                    return cached
            outputs = await runtime.scheduler.submit(request)
            runtime.validator.restore_output_shapes(outputs)
            result = shape_outputs(spec, request.outputs, outputs)
            if cache is not None and cache_key is not None:
                cache.store(spec.name, runtime.version_str, cache_key, result, timing.cache_ns)
        except PackserveError as exc:
            timing.completed_ns = self._clock.now_ns()
            self._observers.request_finished(spec.name, runtime.version_str, timing, exc.reason)
            raise
        except Exception as exc:  # a model bug must fail its own request only, with a clear 500
            timing.completed_ns = self._clock.now_ns()
            self._observers.request_finished(spec.name, runtime.version_str, timing, "BACKEND")
            log.exception("model '%s' failed", spec.name)
            raise ModelExecutionError(f"model '{spec.name}' failed: {exc}") from exc
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
        timing.completed_ns = self._clock.now_ns()
        self._observers.request_finished(spec.name, runtime.version_str, timing, None)
        return InferResponse(spec.name, runtime.version_str, request.id, result)

    def add_observer(self, observer: InferenceObserver) -> None:
        self._observers.add(observer)

    # ---- lifecycle -----------------------------------------------------------------------
    async def shutdown(self, drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S) -> bool:
        """Refuse new requests, wait up to `drain_timeout_s` in all for those in flight, unload every
        model (batches still executing at the deadline are interrupted: isolated workers are
        killed). True when everything in flight finished in time."""
        self._draining = True
        if self._poll_task is not None:
            self._poll_task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout_s
        drained = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=drain_timeout_s)
        except asyncio.TimeoutError:
            drained = False
            log.warning(
                "%d requests still in flight after %.0fs; stopping anyway", self._in_flight, drain_timeout_s
            )
        await self.repository.unload_all(max(0.0, deadline - loop.time()))
        self.shared_memory.close()
        self.tracing.close()  # writes what the trace file still holds
        return drained

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.poll_interval_s)
            try:
                await self.repository.poll()
            except Exception:  # polling must survive a bad scan
                log.exception("repository poll failed")
