"""The model repository: which models exist, their state, and loading / unloading them.

A broken model (unparsable config, missing file, graph disagreeing with its config, bad ensemble)
never stops the others: it is UNAVAILABLE with the reason, and everything else serves.
Threading: all methods run on the event loop; config parsing and weight loading go to threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from packserve.config.ensemble_graph import validate_ensemble
from packserve.config.loader import ConfigLoadOptions, LoadedConfig, load_model_config
from packserve.config.spec import ModelSpec
from packserve.core.region_map import validate_region_map
from packserve.core.repository_roots import RepositoryRoots
from packserve.core.runtime import (
    ModelRuntime,
    RuntimeDeps,
    backend_runtime,
    build_composite_runtime,
    is_composite,
    load_backend_instances,
)
from packserve.core.views import IndexEntry
from packserve.errors import ConfigError, ModelLoadError, ModelNotReadyError, NotFoundError, PackserveError

log = logging.getLogger("packserve.repository")

READY, UNAVAILABLE, LOADING, UNLOADING = "READY", "UNAVAILABLE", "LOADING", "UNLOADING"


@dataclass
class ModelEntry:
    name: str
    state: str = UNAVAILABLE
    reason: str = "unloaded"
    runtimes: dict[int, ModelRuntime] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The newest file change seen when it was loaded (poll mode reloads when it moves).
    loaded_mtime: float = 0.0

    @property
    def latest(self) -> ModelRuntime | None:
        return self.runtimes[max(self.runtimes)] if self.runtimes else None


def model_dir_mtime(model_dir: Path) -> float:
    """The newest modification time of anything in a model folder (for poll mode)."""
    newest = model_dir.stat().st_mtime
    for path in model_dir.rglob("*"):
        try:
            newest = max(newest, path.stat().st_mtime)
        except OSError:
            continue
    return newest


class ModelRepository:
    def __init__(
        self,
        root: Path | Sequence[Path],
        deps: RuntimeDeps,
        drain_timeout_s: float = 30.0,
        config_options: ConfigLoadOptions | None = None,
        load_concurrency: int = 0,
    ) -> None:
        self.roots = RepositoryRoots([root] if isinstance(root, Path) else list(root))
        self.root = self.roots.first
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
            if entry.state == READY and entry.latest is not None
        }

    def runtime(self, name: str, version: str = "") -> ModelRuntime:
        """The runtime that serves (name, version); NotFoundError / ModelNotReadyError otherwise."""
        entry = self._entries.get(name)
        if entry is None or (entry.state != READY and not entry.runtimes):
            if entry is None and not self.roots.exists(name):
                raise NotFoundError(f"Request for unknown model: '{name}' is not found")
            raise ModelNotReadyError(f"Request for unknown model: '{name}' is not ready")
        if not version:
            latest = entry.latest
            if latest is None:
                raise ModelNotReadyError(f"model '{name}' has no ready version")
            return latest
        try:
            number = int(version)
        except ValueError:
            raise NotFoundError(f"model '{name}': version '{version}' is not a number") from None
        runtime = entry.runtimes.get(number)
        if runtime is None:
            raise NotFoundError(f"Request for unknown model: '{name}' version {version} is not found")
        return runtime

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        rows: list[IndexEntry] = []
        for name in self.names():
            entry = self._entries.get(name) or ModelEntry(name)
            if ready_only and entry.state != READY:
                continue
            if entry.runtimes:
                rows.extend(
                    IndexEntry(name, str(v), entry.state, entry.reason) for v in sorted(entry.runtimes)
                )
            else:
                rows.append(IndexEntry(name, "", entry.state, entry.reason))
        return rows

    async def load_all(self, names: Iterable[str]) -> None:
        """Load many models: backend models concurrently, then composite ones (which check the
        models they call), in rounds until no more can be loaded."""
        configs: dict[str, LoadedConfig | PackserveError] = {}
        names = list(names)
        results = await asyncio.gather(*(self._read_config(name, None) for name in names))
        configs = dict(zip(names, results, strict=True))
        plain = [n for n, c in configs.items() if not (isinstance(c, LoadedConfig) and is_composite(c.spec))]
        await asyncio.gather(*(self._load_limited(name, configs[name]) for name in plain))
        composite = [n for n in names if n not in plain]
        # Composite models may call each other: load those whose callees are ready, repeat.
        while composite:
            ready = set(self.ready_specs())
            runnable = [n for n in composite if _callees(configs[n]) <= ready]
            if not runnable:
                break
            for name in runnable:
                composite.remove(name)
                await self._load_with(name, configs[name])
        for name in composite:  # what is left calls models that never became ready
            await self._load_with(name, configs[name])

    async def load(self, name: str, override_json: str | None = None) -> None:
        if not self.roots.exists(name) and override_json is None:
            raise NotFoundError(f"failed to load '{name}', failed to poll from model repository")
        await self._load_with(name, await self._read_config(name, override_json))
        entry = self._entries[name]
        if entry.state != READY:
            raise ModelLoadError(f"failed to load '{name}': {entry.reason}")

    async def unload(self, name: str) -> None:
        entry = self._entries.get(name)
        if entry is None:
            # Nothing loaded under that name: unloading is already done, as Triton answers.
            return
        async with entry.lock:
            runtimes, entry.runtimes = entry.runtimes, {}
            entry.state, entry.reason = UNLOADING, ""
            await self._close_runtimes(runtimes.values())
            entry.state, entry.reason = UNAVAILABLE, "unloaded"
        for runtime in runtimes.values():
            self._deps.observer.model_unloaded(name, runtime.version_str)
        log.info("unloaded model '%s'", name)

    async def unload_all(self) -> None:
        await asyncio.gather(*(self.unload(name) for name, e in list(self._entries.items()) if e.runtimes))

    def dependents(self, name: str) -> list[str]:
        """Ready composite models that call `name`."""
        return [
            other
            for other, entry in self._entries.items()
            if entry.latest is not None and name in _spec_callees(entry.latest.spec)
        ]

    async def _read_config(self, name: str, override_json: str | None) -> LoadedConfig | PackserveError:
        duplicate = self.roots.duplicate_reason(name)
        if duplicate is not None:
            return ConfigError(duplicate)
        try:
            return await asyncio.to_thread(
                load_model_config, self.model_dir(name), override_json, options=self._config_options
            )
        except PackserveError as exc:
            return exc
        except Exception as exc:  # never let one model's config take the server down
            return ModelLoadError(f"model '{name}': unexpected error reading config: {exc}")

    async def _load_with(self, name: str, loaded: LoadedConfig | PackserveError) -> None:
        entry = self.entry(name)
        async with entry.lock:
            previous_state = entry.state
            entry.state, entry.reason = LOADING, ""
            try:
                if isinstance(loaded, PackserveError):
                    raise loaded
                new_runtimes = await self._build(loaded)
            except PackserveError as exc:
                entry.state = READY if previous_state == READY and entry.runtimes else UNAVAILABLE
                entry.reason = str(exc) if entry.state == UNAVAILABLE else ""
                log.error("model '%s' is unavailable: %s", name, exc)
                if entry.state == READY:  # a failed reload keeps serving the old versions
                    raise
                return
            old, entry.runtimes = entry.runtimes, new_runtimes
            entry.state, entry.reason = READY, ""
            try:
                entry.loaded_mtime = model_dir_mtime(self.model_dir(name))
            except OSError:
                entry.loaded_mtime = 0.0
        await self._close_runtimes(old.values())
        for runtime in new_runtimes.values():
            self._deps.observer.model_loaded(name, runtime.version_str, runtime.load_seconds)
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
            else:
                validate_region_map(spec, others)
            return {v: build_composite_runtime(spec, loaded.config, v, deps) for v in loaded.versions}
        built: dict[int, ModelRuntime] = {}
        try:
            for version in loaded.versions:
                instances = await asyncio.to_thread(
                    load_backend_instances, spec, loaded.config, version, deps
                )
                built[version] = backend_runtime(spec, loaded.config, version, instances, deps)
        except BaseException:
            await self._close_runtimes(built.values())
            raise
        return built

    async def _close_runtimes(self, runtimes: Iterable[ModelRuntime]) -> None:
        await asyncio.gather(*(r.close(self._drain_timeout_s) for r in runtimes))


def _spec_callees(spec: ModelSpec) -> set[str]:
    if spec.is_ensemble:
        return {step.model_name for step in spec.ensemble_steps}
    target = spec.parameters.get("model")
    return {target} if target else set()


def _callees(loaded: LoadedConfig | PackserveError) -> set[str]:
    return _spec_callees(loaded.spec) if isinstance(loaded, LoadedConfig) else set()
