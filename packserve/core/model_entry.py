"""One model's record in the repository (its state, reason, loaded versions) and the calls between
models that the repository follows when it loads and unloads (ensemble steps, a region map's
crop and target models).

Threading: event-loop thread only; `ModelEntry.lock` serialises one model's loads and unloads.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from packserve.config.loader import LoadedConfig
from packserve.config.region_map import region_map_callees
from packserve.core.runtime import ModelRuntime
from packserve.core.views import ModelState
from packserve.errors import PackserveError, UnavailableError
from packserve.model_spec import ModelSpec

# The start of the reason a composite model is UNAVAILABLE with after a model it calls went away;
# loading that model again brings such composites back.
CALLEE_UNLOADED = "a model it calls,"


@dataclass
class ModelEntry:
    name: str
    state: ModelState = ModelState.UNAVAILABLE
    reason: str = "unloaded"
    runtimes: dict[int, ModelRuntime] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The newest file change seen when it was loaded (poll mode reloads when it moves).
    loaded_mtime: float = 0.0
    # Models it calls (ensemble steps, region-map crop model and target), from its last config read.
    callees: frozenset[str] = frozenset()
    # Loaded by name (startup or the load API), not only as what a composite model calls:
    # unload_dependents leaves such a model loaded, as Triton does.
    explicit: bool = False

    @property
    def latest(self) -> ModelRuntime | None:
        return self.runtimes[max(self.runtimes)] if self.runtimes else None


def runtime_failure(runtime: ModelRuntime) -> str | None:
    """Why a loaded version can serve no more (every instance stuck or failed), else None."""
    return runtime.pool.failed_reason if runtime.pool is not None else None


def serving(runtime: ModelRuntime) -> ModelRuntime:
    """The runtime, if it can still serve; UnavailableError with the reason otherwise."""
    failed = runtime_failure(runtime)
    if failed is not None:
        raise UnavailableError(failed)
    return runtime


def spec_callees(spec: ModelSpec) -> set[str]:
    """The models a composite model calls: ensemble steps, a region map's crop and target models
    (any other model may have parameters called `model` or `crop_model` for its own use)."""
    if spec.is_ensemble:
        return {step.model_name for step in spec.ensemble_steps}
    return set(region_map_callees(spec))


def config_callees(loaded: LoadedConfig | PackserveError) -> set[str]:
    """What a config read calls; nothing for a config that could not be read."""
    return spec_callees(loaded.spec) if isinstance(loaded, LoadedConfig) else set()
