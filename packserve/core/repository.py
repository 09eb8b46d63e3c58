"""The model repository: which models exist, their state, and loading / unloading them.

A broken model (unparsable config, missing file, graph disagreeing with its config, bad ensemble)
never stops the others: it is UNAVAILABLE with the reason, and everything else serves.
Threading: all methods run on the event loop; config parsing and weight loading go to threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from packserve.backends.registry import load_backend
from packserve.config.confine import check_model_name
from packserve.config.ensemble_graph import validate_ensemble
from packserve.config.loader import ConfigLoadOptions, LoadedConfig, load_model_config
from packserve.config.region_map import validate_region_map
from packserve.core.engine_api import DEFAULT_DRAIN_TIMEOUT_S
from packserve.core.model_entry import (
    CALLEE_UNLOADED,
    ModelEntry,
    config_callees,
    runtime_failure,
    serving,
    spec_callees,
)
from packserve.core.repository_roots import RepositoryRoots, model_dir_mtime
from packserve.core.runtime import (
    ModelRuntime,
    RuntimeDeps,
    backend_runtime,
    build_composite_runtime,
    is_composite,
    load_backend_instances,
)
from packserve.core.views import IndexEntry, ModelState
from packserve.errors import (
    ConfigError,
    ModelLoadError,
    ModelNotReadyError,
    NotFoundError,
    PackserveError,
)
from packserve.model_spec import ModelSpec

log = logging.getLogger("packserve.repository")


class ModelRepository:
    def __init__(
        self,
        root: Path | Sequence[Path],
        deps: RuntimeDeps,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
        config_options: ConfigLoadOptions | None = None,
        load_concurrency: int = 0,
    ) -> None:
        self.roots = RepositoryRoots([root] if isinstance(root, Path) else list(root))
        self._deps = deps
        self._drain_timeout_s = drain_timeout_s
        self._config_options = config_options or ConfigLoadOptions()
        # Triton's --model-load-thread-count: how many models load at once (0 = no limit).
        self._load_slots = asyncio.Semaphore(load_concurrency) if load_concurrency > 0 else None
        self._entries: dict[str, ModelEntry] = {}

    def scan(self) -> list[str]:
        """Model folders in every repository (hidden folders and files skipped), sorted."""
        return self.roots.scan()

    def model_dir(self, name: str) -> Path:
        return self.roots.model_dir(name)

    def entry(self, name: str) -> ModelEntry:
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = ModelEntry(name)
        return entry

    def find(self, name: str) -> ModelEntry | None:
        """The entry of a model seen before, without creating one for an unknown name."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        return sorted(set(self._entries) | set(self.scan()))

    def ready_specs(self) -> dict[str, ModelSpec]:
        return {
            name: entry.latest.spec
            for name, entry in self._entries.items()
            if entry.state == ModelState.READY and entry.latest is not None
        }

    def runtime(self, name: str, version: str = "") -> ModelRuntime:
        """The runtime that serves (name, version); NotFoundError / ModelNotReadyError otherwise."""
        entry = self._entries.get(name)
        if entry is None or (entry.state != ModelState.READY and not entry.runtimes):
            if entry is None:
                check_model_name(name)  # off the hot path: only names never loaded get here
            if entry is None and not self.roots.exists(name):
                raise NotFoundError(f"Request for unknown model: '{name}' is not found")
            raise ModelNotReadyError(f"Request for unknown model: '{name}' is not ready")
        if not version:
            latest = entry.latest
            if latest is None:
                raise ModelNotReadyError(f"model '{name}' has no ready version")
            return serving(latest)
        try:
            number = int(version)
        except ValueError:
            raise NotFoundError(f"model '{name}': version '{version}' is not a number") from None
        runtime = entry.runtimes.get(number)
        if runtime is None:
            raise NotFoundError(f"Request for unknown model: '{name}' version {version} is not found")
        return serving(runtime)

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        rows: list[IndexEntry] = []
        for name in self.names():
            entry = self._entries.get(name) or ModelEntry(name)
            if ready_only and entry.state != ModelState.READY:
                continue
            if entry.runtimes:
                for version in sorted(entry.runtimes):
                    failed = runtime_failure(entry.runtimes[version])
                    if failed is None or entry.state != ModelState.READY:
                        rows.append(IndexEntry(name, str(version), entry.state, entry.reason))
                    elif not ready_only:
                        rows.append(IndexEntry(name, str(version), ModelState.UNAVAILABLE, failed))
            else:
                rows.append(IndexEntry(name, "", entry.state, entry.reason))
        return rows

    async def load_all(self, names: Iterable[str]) -> None:
        """Load many models: backend models concurrently, then composite ones (which check the
        models they call), in rounds until no more can be loaded."""
        configs: dict[str, LoadedConfig | PackserveError] = {}
        names = list(names)
        for name in names:  # asked for by name; what composites bring along is not
            self.entry(name).explicit = True
        while names:  # composite models bring the models they call that are not ready (Triton does)
            results = await asyncio.gather(*(self._read_config(name, None) for name in names))
            configs.update(zip(names, results, strict=True))
            ready = set(self.ready_specs())
            wanted = {c for loaded in results for c in config_callees(loaded)}
            names = sorted(c for c in wanted - ready - set(configs) if self.roots.exists(c))
        names = list(configs)
        plain = [n for n, c in configs.items() if not (isinstance(c, LoadedConfig) and is_composite(c.spec))]
        await asyncio.gather(*(self._load_limited(name, configs[name]) for name in plain))
        composite = [n for n in names if n not in plain]
        # Composite models may call each other: load those whose callees are ready, repeat.
        while composite:
            ready = set(self.ready_specs())
            runnable = [n for n in composite if config_callees(configs[n]) <= ready]
            if not runnable:
                break
            for name in runnable:
                composite.remove(name)
                await self._load_with(name, configs[name])
        for name in composite:  # what is left calls models that never became ready
            await self._load_with(name, configs[name])

    async def load(
        self,
        name: str,
        override_json: str | None = None,
        _loading: tuple[str, ...] = (),
        explicit: bool = True,
    ) -> None:
        """Load `name`; a composite model (ensemble, region map) first loads the models it calls
        that are not ready, as Triton 2.51 does in explicit mode. Composite models left
        UNAVAILABLE because `name` was unloaded come back with it, as in Triton."""
        check_model_name(name)
        if not self.roots.exists(name):
            # No folder, no entry: loads of names that do not exist leave nothing in the index.
            raise NotFoundError(f"failed to load '{name}', failed to poll from model repository")
        loaded = await self._read_config(name, override_json)
        ready = set(self.ready_specs())
        for callee in sorted(config_callees(loaded) - ready):
            if callee in _loading or callee == name or not self.roots.exists(callee):
                continue  # a cycle or a missing model: validation below names the problem
            try:
                await self.load(callee, None, (*_loading, name), explicit=False)
            except PackserveError as exc:
                log.error("model '%s' needs '%s', which failed to load: %s", name, callee, exc)
        await self._load_with(name, loaded)
        entry = self._entries[name]
        entry.explicit = entry.explicit or explicit
        if entry.state != ModelState.READY:
            raise ModelLoadError(f"failed to load '{name}': {entry.reason}")
        # Those that went down with a model they call come back once all they call is ready.
        ready = set(self.ready_specs())
        orphans = [
            other
            for other, e in self._entries.items()
            if e.state == ModelState.UNAVAILABLE
            and e.reason.startswith(CALLEE_UNLOADED)
            and name in e.callees
            and e.callees <= ready
        ]
        for other in orphans:
            await self._load_with(other, await self._read_config(other, None))

    async def unload(self, name: str, unload_dependents: bool = False) -> None:
        """Unload `name`. Composite models calling it go UNAVAILABLE with it (Triton does the
        same); with `unload_dependents` the models a composite `name` calls are unloaded too,
        unless another loaded composite model still calls them."""
        entry = self._entries.get(name)
        if entry is None:
            # Nothing loaded under that name: unloading is already done, as Triton answers.
            return
        callees = set(entry.callees)
        entry.explicit = False
        await self._unload_one(entry, "unloaded")
        for caller in self.dependents(name):
            await self._unload_one(self._entries[caller], f"{CALLEE_UNLOADED} '{name}' was unloaded")
        if unload_dependents:
            still_called = {c for e in self._entries.values() if e.runtimes for c in e.callees}
            kept = {n for n, e in self._entries.items() if e.explicit}
            for callee in sorted(callees - still_called - kept):
                await self.unload(callee, unload_dependents=True)

    async def _unload_one(self, entry: ModelEntry, reason: str, drain_timeout_s: float | None = None) -> None:
        async with entry.lock:
            runtimes, entry.runtimes = entry.runtimes, {}
            entry.state, entry.reason = ModelState.UNLOADING, ""
            await self._close_runtimes(runtimes.values(), drain_timeout_s)
            entry.state, entry.reason = ModelState.UNAVAILABLE, reason
        for runtime in runtimes.values():
            self._deps.observer.model_unloaded(entry.name, runtime.version_str)
        if runtimes:
            log.info("unloaded model '%s'", entry.name)

    async def unload_all(self, drain_timeout_s: float | None = None) -> None:
        """Unload everything; requests in flight get `drain_timeout_s` (default: the repository's)."""
        loaded = [e for e in self._entries.values() if e.runtimes]
        await asyncio.gather(*(self._unload_one(e, "unloaded", drain_timeout_s) for e in loaded))

    async def poll(self) -> None:
        """Poll mode: load new models, reload changed ones, unload removed ones."""
        present = set(self.scan())
        known = {e.name for e in self.index() if e.state != ModelState.UNAVAILABLE or e.reason != "unloaded"}
        for name in sorted(known - present):
            await self.unload(name)
        changed: list[str] = []
        for name in sorted(present):
            entry = self.entry(name)
            if name not in known or model_dir_mtime(self.model_dir(name)) > entry.loaded_mtime:
                changed.append(name)
        if changed:
            await self.load_all(changed)

    def dependents(self, name: str) -> list[str]:
        """Loaded composite models that call `name`."""
        return [
            other
            for other, entry in self._entries.items()
            if entry.latest is not None and name in spec_callees(entry.latest.spec)
        ]

    async def _read_config(self, name: str, override_json: str | None) -> LoadedConfig | PackserveError:
        duplicate = self.roots.duplicate_reason(name)
        if duplicate is not None:
            return ConfigError(duplicate)
        try:
            return await asyncio.to_thread(
                load_model_config,
                self.model_dir(name),
                override_json,
                options=self._config_options,
                backends=load_backend,
            )
        except PackserveError as exc:
            return exc
        except Exception as exc:  # never let one model's config take the server down
            return ModelLoadError(f"model '{name}': unexpected error reading config: {exc}")

    async def _load_with(self, name: str, loaded: LoadedConfig | PackserveError) -> None:
        entry = self.entry(name)
        async with entry.lock:
            previous_state = entry.state
            entry.state, entry.reason = ModelState.LOADING, ""
            try:
                if isinstance(loaded, PackserveError):
                    raise loaded
                entry.callees = frozenset(spec_callees(loaded.spec))
                new_runtimes = await self._build(loaded)
            except PackserveError as exc:
                kept = previous_state == ModelState.READY and entry.runtimes
                entry.state = ModelState.READY if kept else ModelState.UNAVAILABLE
                entry.reason = str(exc) if entry.state == ModelState.UNAVAILABLE else ""
                log.error("model '%s' is unavailable: %s", name, exc)
                if entry.state == ModelState.READY:  # a failed reload keeps serving the old versions
                    raise
                return
            old, entry.runtimes = entry.runtimes, new_runtimes
            entry.state, entry.reason = ModelState.READY, ""
            try:
                entry.loaded_mtime = model_dir_mtime(self.model_dir(name))
            except OSError:
                entry.loaded_mtime = 0.0
        await self._close_runtimes(old.values())
        if loaded.spec.response_cache and not self._deps.response_cache:
            # Triton serves such a model uncached without a word; say it.
            log.warning(
                "model '%s' enables response_cache but the server has no cache "
                "(--cache-config local,size=BYTES): its responses are not cached",
                name,
            )
        for runtime in new_runtimes.values():
            self._deps.observer.model_loaded(name, runtime.version_str, runtime.load_seconds)
            self._report_warmup(runtime)
            log.info("loaded model '%s' version %d in %.2fs", name, runtime.version, runtime.load_seconds)

    async def _load_limited(self, name: str, loaded: LoadedConfig | PackserveError) -> None:
        if self._load_slots is None:
            await self._load_with(name, loaded)
            return
        async with self._load_slots:
            await self._load_with(name, loaded)

    async def _build(self, loaded: LoadedConfig) -> dict[int, ModelRuntime]:
        spec = loaded.spec
        # The runtime finds the model folder under deps.repository: the repository that holds it.
        deps = replace(self._deps, repository=self.model_dir(spec.name).parent)
        if is_composite(spec):
            others = self.ready_specs()
            if spec.is_ensemble:
                validate_ensemble(spec, others)
            elif loaded.region_map is not None:
                validate_region_map(loaded.region_map, spec, others)
            return {
                v: build_composite_runtime(spec, loaded.config, v, deps, loaded.region_map)
                for v in loaded.versions
            }
        built: dict[int, ModelRuntime] = {}
        try:
            for version in loaded.versions:
                instances = await asyncio.to_thread(
                    load_backend_instances, spec, loaded.config, version, deps, asyncio.get_running_loop()
                )
                built[version] = backend_runtime(spec, loaded.config, version, instances, deps)
        except BaseException:
            await self._close_runtimes(built.values())
            raise
        return built

    def _report_warmup(self, runtime: ModelRuntime) -> None:
        """Triton counts warmup in the statistics: each sample row as a request, each run as an
        execution."""
        observer, name = self._deps.observer, runtime.spec.name
        for rows, timing in runtime.warmup_executions:
            for _ in range(rows):
                observer.request_finished(name, runtime.version_str, timing, None)
            observer.execution_finished(name, runtime.version_str, rows, timing)
        runtime.warmup_executions = []

    async def _close_runtimes(
        self, runtimes: Iterable[ModelRuntime], drain_timeout_s: float | None = None
    ) -> None:
        drain = self._drain_timeout_s if drain_timeout_s is None else drain_timeout_s
        await asyncio.gather(*(r.close(drain) for r in runtimes))

