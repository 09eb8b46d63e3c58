"""A model's one scheduler, picked in one place from its config (as Triton does).

`create_scheduler` returns the dynamic batcher when the config has `dynamic_batching` and the model
batches (max_batch_size > 0), else the direct scheduler that runs each request alone. The engine
owns the scheduler and the `InstancePool` it feeds; closing the scheduler leaves the pool open.
"""

from __future__ import annotations

from typing import Protocol

from packserve.core.admission import DEFAULT_MAX_PENDING
from packserve.core.clock import Clock
from packserve.core.instances import InstancePool
from packserve.core.observer import InferenceObserver
from packserve.core.scheduler_direct import DirectScheduler
from packserve.core.scheduler_dynamic import DynamicBatchScheduler
from packserve.messages import InferRequest, Tensor
from packserve.model_spec import ModelSpec


class Scheduler(Protocol):
    """Every method runs on the event loop."""

    async def submit(self, request: InferRequest) -> dict[str, Tensor]:
        """Run one validated request; its outputs by name (all the backend produced, batch
        dimension included for batching models). Raises a PackserveError: at once when admission
        is refused (core/admission.py: InFlightLimitError, UnavailableError while unloading;
        QueueFullError from the dynamic batcher's max_queue_size), later RequestTimeoutError,
        ModelExecutionError, UnavailableError."""
        ...

    @property
    def pending(self) -> int:
        """Requests waiting or executing."""
        ...

    async def close(self, drain_timeout_s: float) -> None:
        """Refuse new requests (UnavailableError), let the admitted ones finish, then stop."""
        ...


def create_scheduler(
    spec: ModelSpec,
    *,
    version: str,
    pool: InstancePool,
    observer: InferenceObserver,
    clock: Clock | None = None,
    max_pending: int = DEFAULT_MAX_PENDING,
) -> Scheduler:
    if spec.dynamic_batching is not None and spec.batching:
        return DynamicBatchScheduler(
            spec, version=version, pool=pool, observer=observer, clock=clock, max_pending=max_pending
        )
    return DirectScheduler(
        spec, version=version, pool=pool, observer=observer, clock=clock, max_pending=max_pending
    )
