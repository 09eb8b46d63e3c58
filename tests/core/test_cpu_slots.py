"""The CPU execution-slot budget: the pure decision (SlotPolicy, driven by a fake clock and fake
costs), the thread-safe door (CpuSlots) and its use by InstancePool."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from packserve.backends.base import BatchResult, ExecutionTimer
from packserve.core.cpu_slots import (
    CpuSlots,
    SlotPolicy,
    cgroup_cpu_limit,
    resolve_slot_count,
    usable_cores,
)
from packserve.core.instances import InstancePool
from packserve.messages import InferRequest
from tests.fakes.core import DoublingInstance, make_request

# ---- the pure decision --------------------------------------------------------------------------


def test_grants_up_to_capacity_then_queues() -> None:
    policy = SlotPolicy(2)
    assert policy.claim((10, 0)) and policy.claim((11, 1))
    assert not policy.claim((12, 2))
    assert (policy.in_use, policy.waiting) == (2, 1)


def test_freed_slot_goes_to_the_oldest_admission_then_arrival_order() -> None:
    policy = SlotPolicy(1)
    assert policy.claim((50, 0))
    assert not policy.claim((30, 1))  # a newer request's step
    assert not policy.claim((20, 2))  # a later step of a request admitted earlier
    assert not policy.claim((20, 3))  # same admission time: arrival order
    assert [policy.release(), policy.release(), policy.release()] == [[(20, 2)], [(20, 3)], [(30, 1)]]
    assert policy.release() == []
    assert policy.in_use == 0


def test_a_heavy_claim_is_not_overtaken_by_lighter_newer_ones() -> None:
    policy = SlotPolicy(2)
    assert policy.claim((1, 0))  # one core busy
    assert not policy.claim((2, 1), cores=4)  # a decode on a pool: capped at the whole budget
    assert not policy.claim((3, 2))  # would fit, but must not slip past the older heavy claim
    assert policy.release() == [(2, 1)]
    assert policy.in_use == 2
    assert policy.release(cores=4) == [(3, 2)]
    assert policy.release() == []
    assert policy.in_use == 0


def test_release_without_a_grant_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="never granted"):
        SlotPolicy(1).release()
    with pytest.raises(ValueError, match="at least one slot"):
        SlotPolicy(0)


def test_container_cpu_limit() -> None:
    assert cgroup_cpu_limit("max 100000\n") is None
    assert cgroup_cpu_limit("200000 100000\n") == 2
    assert cgroup_cpu_limit("150000 100000") == 2  # 1.5 cores: both may be busy part of the time
    assert cgroup_cpu_limit("50000 100000") == 1
    assert cgroup_cpu_limit("garbage") is None


def test_slot_count_settings() -> None:
    assert resolve_slot_count(-1) == usable_cores() >= 1
    assert resolve_slot_count(0) == 0
    assert resolve_slot_count(3) == 3
    with pytest.raises(ValueError, match="-1"):
        resolve_slot_count(-2)


@dataclass
class Simulation:
    """A fake-clock run of pipelines whose steps need a slot each: request r arrives at
    arrivals[r] and runs steps[0], then steps[1], ... (fake costs in ns)."""

    policy: SlotPolicy
    steps: Sequence[int]
    arrivals: Sequence[int]
    completed: dict[int, int] = field(default_factory=dict)
    most_running: int = 0
    order: list[tuple[int, int]] = field(default_factory=list)  # (request, step) in start order

    def run(self) -> None:
        sequence = itertools.count()
        events: list[tuple[int, int, str, int, int]] = []  # (time, seq, kind, request, step)
        for request, at in enumerate(self.arrivals):
            heapq.heappush(events, (at, next(sequence), "ready", request, 0))
        claims: dict[tuple[int, int], tuple[int, int]] = {}
        running = 0

        def start(now: int, request: int, step: int) -> None:
            nonlocal running
            running += 1
            self.most_running = max(self.most_running, running)
            self.order.append((request, step))
            heapq.heappush(events, (now + self.steps[step], next(sequence), "done", request, step))

        for _ in range(100_000):
            if not events:
                return
            now, _, kind, request, step = heapq.heappop(events)
            if kind == "ready":
                key = (self.arrivals[request], next(sequence))  # admission time, arrival order
                if self.policy.claim(key):
                    start(now, request, step)
                else:
                    claims[key] = (request, step)
                continue
            running -= 1
            if step + 1 < len(self.steps):
                # The next step asks before this one's slot is freed (a next step that comes a
                # moment later competes with what already waits; see docs/architecture.md).
                key = (self.arrivals[request], next(sequence))
                if self.policy.claim(key):
                    start(now, request, step + 1)
                else:
                    claims[key] = (request, step + 1)
            else:
                self.completed[request] = now
            for granted in self.policy.release():  # the slot passes on
                start(now, *claims.pop(granted))
        raise AssertionError("simulation did not finish")


def test_simulation_respects_the_budget_and_finishes_work_in_flight_first() -> None:
    # 12 requests arrive at once on a 2-slot budget; three steps of 10 ms each.
    sim = Simulation(SlotPolicy(2), steps=[10_000_000] * 3, arrivals=[i for i in range(12)])
    sim.run()
    assert sim.most_running == 2
    assert len(sim.completed) == 12
    # Later steps of admitted requests go before new requests' first steps: requests finish in
    # admission order, two at a time, 30 ms apart, instead of all together at the end.
    finish = [sim.completed[r] for r in range(12)]
    assert finish == sorted(finish)
    assert finish[0] <= 30_000_000 + 11 and finish[1] <= 30_000_000 + 11
    assert finish[-1] <= 180_000_000 + 11  # the cores never idle: 36 steps / 2 slots x 10 ms


def test_no_starvation_under_a_stream_of_newer_requests() -> None:
    # Overload: a new request every 5 ms, each needing 2 x 10 ms on one slot. The early requests
    # still finish in bounded time, in order; the newer ones queue behind them.
    arrivals = [i * 5_000_000 for i in range(200)]
    sim = Simulation(SlotPolicy(1), steps=[10_000_000, 10_000_000], arrivals=arrivals)
    sim.run()
    assert sim.most_running == 1
    assert len(sim.completed) == 200
    for request in range(199):
        assert sim.completed[request] < sim.completed[request + 1]
    assert sim.completed[0] == 20_000_000


# ---- the thread-safe door -----------------------------------------------------------------------


def test_threads_never_exceed_the_budget_and_all_finish() -> None:
    slots = CpuSlots(2)
    lock = threading.Lock()
    running = 0
    most = 0
    done: list[int] = []

    def work(origin: int) -> None:
        nonlocal running, most
        slots.acquire(origin)
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.002)
        with lock:
            running -= 1
            done.append(origin)
        slots.release()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(done) == list(range(12))
    assert most <= 2
    assert slots.policy.in_use == 0 and slots.policy.waiting == 0


def test_released_gives_the_slot_back_while_blocked() -> None:
    slots = CpuSlots(1)
    slots.acquire(5)
    other_ran = threading.Event()

    def other() -> None:
        slots.acquire(9)
        other_ran.set()
        slots.release()

    thread = threading.Thread(target=other)
    with slots.released():
        thread.start()
        assert other_ran.wait(30)  # it could run only because the slot was given back
    assert slots.policy.in_use == 1  # held again
    slots.release()
    thread.join(30)
    with slots.released():  # a thread holding nothing: no-op
        assert slots.policy.in_use == 0
    with pytest.raises(RuntimeError, match="holds no"):
        slots.release()


# ---- the instance pool --------------------------------------------------------------------------


class CountingInstance(DoublingInstance):
    """Records how many executions of all instances sharing `counter` run at once."""

    def __init__(self, counter: dict[str, int], lock: threading.Lock) -> None:
        super().__init__()
        self.counter = counter
        self.lock = lock

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        with self.lock:
            self.counter["now"] += 1
            self.counter["most"] = max(self.counter["most"], self.counter["now"])
        time.sleep(0.003)
        with self.lock:
            self.counter["now"] -= 1
        return super().execute(requests, timer)


class MeetingInstance(DoublingInstance):
    """Executes only once the other instance sharing `barrier` executes too (a GPU stand-in:
    if the budget held it, the two would never meet and the barrier would break)."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__()
        self.barrier = barrier

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        self.barrier.wait(30)
        return super().execute(requests, timer)


async def test_pools_share_the_budget_and_gpu_instances_are_not_held() -> None:
    slots = CpuSlots(1)
    lock = threading.Lock()
    cpu_counter = {"now": 0, "most": 0}
    barrier = threading.Barrier(2)
    pool_a = InstancePool(
        "a", [CountingInstance(cpu_counter, lock) for _ in range(2)], batching=True, cpu_slots=slots
    )
    pool_b = InstancePool(
        "b", [CountingInstance(cpu_counter, lock) for _ in range(2)], batching=True, cpu_slots=slots
    )
    gpu = InstancePool(
        "g",
        [MeetingInstance(barrier) for _ in range(2)],
        batching=True,
        cpu_slots=slots,
        on_cpu=[False, False],
    )
    try:
        runs = []
        for _ in range(6):
            for pool in (pool_a, pool_b, gpu):
                for index in (0, 1):
                    runs.append(pool.run([make_request()], instance_index=index))
        results = await asyncio.wait_for(asyncio.gather(*runs), 60)
        assert all(isinstance(r[0], dict) for r in results)
        assert cpu_counter["most"] == 1  # two models, four instances, one slot
        assert not barrier.broken  # GPU instances overlap freely
        assert slots.policy.in_use == 0
    finally:
        for pool in (pool_a, pool_b, gpu):
            pool.close()
