"""The execution deadline of in-process instances: a loop-side watchdog over an InstancePool."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from packserve.backends.base import BackendInstance

if TYPE_CHECKING:
    from packserve.core.instances import Job

log = logging.getLogger("packserve.core.instances")


class ExecutionWatchdog:
    """Checks, from the loop, that no batch of a pool runs past the execution deadline.

    Worker threads note the batch they run in `running` (one tuple store, no loop wake-up); a timer
    that runs only while batches are out looks at them every quarter deadline (at most 1 s). State
    is read and written on the loop thread, except `running`, written by each instance's thread.
    """

    def __init__(
        self,
        model_name: str,
        instances: Sequence[BackendInstance],
        timeout_s: float,
        busy: list[int],
        on_late: Callable[[int, Job, str], None],
    ) -> None:
        self._model = model_name
        self._busy = busy  # the pool's own list: batches out per instance
        self._on_late = on_late
        size = len(instances)
        # Instances whose own execute keeps the deadline (isolated workers) are not watched.
        self._watched = [timeout_s > 0 and not instance.enforces_execution_timeout for instance in instances]
        self._timeout_s = timeout_s
        self._period_s = min(1.0, timeout_s / 4) if timeout_s > 0 else 0.0
        self.running: list[tuple[Job, float] | None] = [None] * size
        self.stuck: list[str | None] = [None] * size
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and not self._stopped and any(self._watched):
            self._timer = loop.call_later(self._period_s, self._check, loop)

    def release(self, index: int) -> bool:
        """The stuck instance `index` returned; True if it had been set aside."""
        was_stuck = self.stuck[index] is not None
        if was_stuck:
            log.warning("model '%s': instance %d returned after its deadline", self._model, index)
        self.stuck[index] = None
        return was_stuck

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = time.monotonic()
        for index, entry in enumerate(self.running):
            if entry is None or not self._watched[index]:
                continue
            job, started = entry
            if now - started > self._timeout_s and not job.answered:
                self._on_late(
                    index,
                    job,
                    f"model '{self._model}': execution on instance {index} exceeded its deadline of "
                    f"{self._timeout_s:g} s (parameter execution_timeout_s); the instance is set aside "
                    "until it returns",
                )
        if any(self._busy):
            self.arm(loop)
