"""The CPU execution-slot budget: how many batches may compute on the CPU at once, shared by every
CPU instance of every model, and which waiting batch runs next.

Why: on a machine with C cores, N models x M instances of worker threads all computing at once
time-slice the cores. Each batch then takes (runnable threads / C) times longer, every request in
flight is slowed at once, and the requests admitted first finish no sooner than the ones admitted
last: throughput is no better and the latency tail much worse. With at most C executions at once,
each runs at full speed, and the order in which waiting batches get a slot decides which requests
finish first.

The policy (`SlotPolicy`, pure): a batch gets a free slot at once; when all are taken it waits,
and a freed slot goes to the waiting batch whose oldest request was admitted to the server first
(`origin_ns`: an ensemble's steps carry their parent's admission time). So the later steps of
requests already in flight run before the first steps of newer requests (work in flight finishes
first), and nothing starves: a newer request never overtakes an older one, and only the finitely
many requests admitted before a waiting batch's own can go ahead of it. Ties keep arrival order.

The doing (`CpuSlots`): worker threads block in `acquire` until the policy grants them a slot.
Only worker threads of KIND_CPU instances use it; GPU instances (whose kernels overlap on the
device) and batches run inline on the event loop (measured cheap) never wait for a slot. Time
spent waiting for a slot counts as the batch's queue time, not its compute time.

A thread that holds a slot and blocks on other models (a python model's BLS call) must give its
slot back while it waits (`CpuSlots.released`), or the models it waits for could never run.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

# (admission time of the batch's oldest request, arrival order): smaller runs first.
ClaimKey = tuple[int, int]


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cgroup_cpu_limit(text: str) -> int | None:
    """Whole cores allowed by a cgroup v2 `cpu.max` ("QUOTA PERIOD", or "max PERIOD" = none),
    rounded up; None when unlimited or unreadable."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a container's CPU limit
    (a Kubernetes pod's `limits.cpu` shows up as the cgroup quota, not as fewer cores)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - no affinity call on this platform
        cores = max(1, os.cpu_count() or 1)
    try:
        limit = cgroup_cpu_limit(CGROUP_CPU_MAX.read_text())
    except OSError:
        limit = None
    return min(cores, limit) if limit else cores


def resolve_slot_count(configured: int) -> int:
    """`--cpu-execution-slots`: -1 = one per usable core, 0 = no budget, N > 0 = N."""
    if configured < -1:
        raise ValueError(
            f"CPU execution slots must be -1 (one per core), 0 (off) or positive, got {configured}"
        )
    return usable_cores() if configured == -1 else configured


class SlotPolicy:
    """The decision alone: which claims hold slots, which wait, and who is granted freed slots.
    No threads and no clock of its own; `CpuSlots` and the tests drive it.

    A claim's weight is the cores its execution keeps busy (an image batch decoded on a pool of
    threads: several; capped at the capacity). Waiting claims are granted strictly in order: a
    light claim does not slip past a heavier one that came first, so heavy claims never starve.
    """

    __slots__ = ("_capacity", "_in_use", "_waiting")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a slot budget needs at least one slot, got {capacity}")
        self._capacity = capacity
        self._in_use = 0
        self._waiting: list[tuple[ClaimKey, int]] = []

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def weight_of(self, cores: int) -> int:
        return min(max(1, cores), self._capacity)

    def claim(self, key: ClaimKey, cores: int = 1) -> bool:
        """A batch asks for slots: True = granted now; False = it waits until `release` names it.
        Only this claim can be granted here: before it, the first waiting claim did not fit."""
        heapq.heappush(self._waiting, (key, self.weight_of(cores)))
        return bool(self._grant())

    def release(self, cores: int = 1) -> list[ClaimKey]:
        """A batch that held `cores` slots finished: the waiting claims now granted, first first."""
        weight = self.weight_of(cores)
        if weight > self._in_use:
            raise RuntimeError("a CPU execution slot was released that was never granted")
        self._in_use -= weight
        return self._grant()

    def _grant(self) -> list[ClaimKey]:
        granted = []
        while self._waiting and self._in_use + self._waiting[0][1] <= self._capacity:
            key, weight = heapq.heappop(self._waiting)
            self._in_use += weight
            granted.append(key)
        return granted


class CpuSlots:
    """The thread-safe door to a `SlotPolicy`, shared by the instance pools of every model."""

    def __init__(self, capacity: int) -> None:
        self.policy = SlotPolicy(capacity)
        self._lock = threading.Lock()
        self._sequence = itertools.count()
        self._granted: dict[ClaimKey, threading.Event] = {}
        self._held = threading.local()  # (origin_ns, cores) of the claim this thread holds, if any

    @property
    def capacity(self) -> int:
        return self.policy.capacity

    def acquire(self, origin_ns: int, cores: int = 1) -> None:
        """Block the calling worker thread until it holds slots for `cores` cores."""
        with self._lock:
            key = (origin_ns, next(self._sequence))
            if self.policy.claim(key, cores):
                self._held.claim = (origin_ns, cores)
                return
            # Only a release (under this lock) can grant it: registering it here is in time.
            event = threading.Event()
            self._granted[key] = event
        event.wait()
        self._held.claim = (origin_ns, cores)

    def release(self) -> None:
        claim = getattr(self._held, "claim", None)
        if claim is None:
            raise RuntimeError("this thread holds no CPU execution slot")
        self._held.claim = None
        with self._lock:
            for key in self.policy.release(claim[1]):
                self._granted.pop(key).set()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Give this thread's slot back while it blocks on other models; take one again after
        (with its original admission time, so it is not sent to the back). A no-op on a thread
        that holds none."""
        claim = getattr(self._held, "claim", None)
        if claim is None:
            yield
            return
        self.release()
        try:
            yield
        finally:
            self.acquire(*claim)
