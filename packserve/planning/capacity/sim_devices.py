"""The simulated device of one pod replica: how batches of its models share it.

A GPU runs one batch at a time; the others wait their turn (`ExclusiveDevice`). A CPU pod shares
its cores between every batch that runs, as the operating system's scheduler does: with n batches
running on c cores each progresses at min(1, c / n) of a core (`SharedCores`, processor sharing). A
batch costs its work (device seconds) either way; what differs is who waits. Fractional cores
model a pod that gets only part of a machine.

Both run inside a SimPy environment; `run` is a generator an instance process yields from.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Protocol

import simpy

# Work left below this (seconds) is done: floating-point remainders of shared progress.
_DONE_S = 1e-9


class SimDevice(Protocol):
    def run(self, work_s: float) -> Generator[simpy.Event, Any, None]: ...


class ExclusiveDevice:
    """`slots` batches at a time, each at full speed; the rest queue in arrival order."""

    def __init__(self, env: simpy.Environment, slots: int = 1) -> None:
        self.env = env
        self._resource = simpy.Resource(env, capacity=max(1, slots))

    def run(self, work_s: float) -> Generator[simpy.Event, Any, None]:
        with self._resource.request() as turn:
            yield turn
            yield self.env.timeout(work_s)


class SharedCores:
    """Processor sharing over `cores` (may be fractional): every running batch progresses at
    min(1, cores / running) of a core - a single-threaded batch never uses more than one."""

    def __init__(self, env: simpy.Environment, cores: float) -> None:
        if cores <= 0:
            raise ValueError(f"a shared CPU needs cores above zero, got {cores}")
        self.env = env
        self.cores = cores
        self._jobs: dict[int, list[Any]] = {}  # id -> [work left (s), done event]
        self._next_id = 0
        self._last = env.now
        self._changed = env.event()
        env.process(self._serve())

    def run(self, work_s: float) -> Generator[simpy.Event, Any, None]:
        self._advance()
        done = self.env.event()
        self._jobs[self._next_id] = [work_s, done]
        self._next_id += 1
        if not self._changed.triggered:
            self._changed.succeed()
        yield done

    def _rate(self) -> float:
        return min(1.0, self.cores / len(self._jobs)) if self._jobs else 0.0

    def _advance(self) -> None:
        """Credit every running batch with the work done since the last change."""
        elapsed = self.env.now - self._last
        if elapsed > 0 and self._jobs:
            progress = elapsed * self._rate()
            for job in self._jobs.values():
                job[0] -= progress
        self._last = self.env.now

    def _serve(self) -> Generator[simpy.Event, Any, None]:
        while True:
            if not self._jobs:
                yield self._changed
            else:
                soonest = min(job[0] for job in self._jobs.values())
                yield self.env.timeout(max(0.0, soonest / self._rate())) | self._changed
            if self._changed.triggered:
                self._changed = self.env.event()
            self._advance()
            for key, (left, done) in list(self._jobs.items()):
                if left <= _DONE_S:
                    del self._jobs[key]
                    done.succeed()
