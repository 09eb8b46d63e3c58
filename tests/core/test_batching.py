"""The pure batching decision, driven with a fake clock."""

from __future__ import annotations

from packserve.core.batching import (
    Batch,
    Idle,
    PendingItem,
    PendingQueue,
    Wait,
    decide_batch,
)
from packserve.core.clock import FakeClock
from packserve.model_spec import BatchingPolicy, QueuePolicy

US = 1000


def push(queue: PendingQueue[str], clock: FakeClock, name: str, rows: int = 1, priority: int = 1,
         timeout_us: int = 0) -> None:
    now = clock.now_ns()
    deadline = now + timeout_us * US if timeout_us else 0
    queue.push(PendingItem(now, rows, deadline, priority, name))


def names(action: object) -> list[str]:
    assert isinstance(action, Batch), action
    return [item.payload for item in action.items]


def test_empty_queue_is_idle() -> None:
    queue: PendingQueue[str] = PendingQueue.from_policy(BatchingPolicy())
    decision = decide_batch(queue, 0, BatchingPolicy(), 8)
    assert isinstance(decision.action, Idle)
    assert decision.rejected == []


def test_no_delay_sends_what_is_there_at_once() -> None:
    policy = BatchingPolicy()
    clock = FakeClock()
    queue: PendingQueue[str] = PendingQueue.from_policy(policy)
    push(queue, clock, "a")
    push(queue, clock, "b")
    decision = decide_batch(queue, clock.now_ns(), policy, 8)
    assert names(decision.action) == ["a", "b"]
    assert isinstance(decision.action, Batch) and decision.action.rows == 2
    assert len(queue) == 0


def test_waits_for_max_queue_delay_then_sends() -> None:
    policy = BatchingPolicy(max_queue_delay_us=500)
    clock = FakeClock(1_000_000)
    queue: PendingQueue[str] = PendingQueue.from_policy(policy)
    push(queue, clock, "a")
    clock.advance(100 * US)
    push(queue, clock, "b")
    decision = decide_batch(queue, clock.now_ns(), policy, 8)
    assert decision.action == Wait(1_000_000 + 500 * US)
    assert len(queue) == 2
    clock.set(1_000_000 + 500 * US)
    assert names(decide_batch(queue, clock.now_ns(), policy, 8).action) == ["a", "b"]


def test_full_batch_goes_without_waiting() -> None:
    policy = BatchingPolicy(max_queue_delay_us=1_000_000)
    clock = FakeClock()
    queue: PendingQueue[str] = PendingQueue.from_policy(policy)
    for i in range(5):
        push(queue, clock, f"r{i}")
    decision = decide_batch(queue, clock.now_ns(), policy, 4)
    assert names(decision.action) == ["r0", "r1", "r2", "r3"]
    # The one left over waits for company or the delay.
    assert isinstance(decide_batch(queue, clock.now_ns(), policy, 4).action, Wait)


def test_largest_preferred_size_reached_is_taken() -> None:
    policy = BatchingPolicy(preferred_batch_sizes=(2, 4), max_queue_delay_us=1_000_000)
    clock = FakeClock()
    queue: PendingQueue[str] = PendingQueue.from_policy(policy)
    for i in range(5):
        push(queue, clock, f"r{i}")
    decision = decide_batch(queue, clock.now_ns(), policy, 16)
    assert names(decision.action) == ["r0", "r1", "r2", "r3"]
    assert isinstance(decide_batch(queue, clock.now_ns(), policy, 16).action, Wait)


def test_preferred_size_not_reached_waits() -> None:
    policy = BatchingPolicy(preferred_batch_sizes=(4,), max_queue_delay_us=1000)
    clock = FakeClock()
    queue: PendingQueue[str] = PendingQueue.from_policy(policy)
    push(queue, clock, "a", rows=3)
    assert isinstance(decide_batch(queue, clock.now_ns(), policy, 8).action, Wait)
    push(queue, clock, "b", rows=1)
    assert names(decide_batch(queue, clock.now_ns(), policy, 8).action) == ["a", "b"]


def test_multi_row_requests_never_exceed_max_batch_size() -> None:
    policy = BatchingPolicy()
    clock = FakeClock()
    queue: PendingQueue[str] = PendingQueue.from_policy(policy)
    sizes = [3, 3, 3, 1, 4, 2, 2]
    for i, rows in enumerate(sizes):
        push(queue, clock, f"r{i}", rows=rows)
    batches = []
    while True:
        action = decide_batch(queue, clock.now_ns(), policy, 7).action
        if isinstance(action, Idle):
            break
        assert isinstance(action, Batch)
        assert action.rows == sum(item.rows for item in action.items) <= 7
        batches.append([item.payload for item in action.items])
    # FIFO is kept: a request that does not fit closes the batch rather than being skipped.
    assert batches == [["r0", "r1"], ["r2", "r3"], ["r4", "r5"], ["r6"]]


def test_higher_priority_first_and_fifo_within_a_level() -> None:
    policy = BatchingPolicy(priority_levels=3, default_priority_level=2)
    clock = FakeClock()
    queue: PendingQueue[str] = PendingQueue.from_policy(policy)
    push(queue, clock, "low1", priority=3)
    push(queue, clock, "mid1", priority=2)
    push(queue, clock, "high1", priority=1)
    push(queue, clock, "low2", priority=3)
    push(queue, clock, "high2", priority=1)
    assert names(decide_batch(queue, clock.now_ns(), policy, 3).action) == ["high1", "high2", "mid1"]
    assert names(decide_batch(queue, clock.now_ns(), policy, 3).action) == ["low1", "low2"]


def test_reject_timeout_removes_expired_items() -> None:
    policy = BatchingPolicy(
        max_queue_delay_us=10_000,
        default_queue_policy=QueuePolicy(timeout_action="REJECT", default_timeout_us=100),
    )
    clock = FakeClock()
    queue: PendingQueue[str] = PendingQueue.from_policy(policy)
    push(queue, clock, "old", timeout_us=100)
    clock.advance(50 * US)
    push(queue, clock, "new")
    decision = decide_batch(queue, clock.now_ns(), policy, 8)
    # The wake-up comes at the first timeout, before the queue delay ends.
    assert decision.action == Wait(100 * US)
    clock.set(100 * US)
    decision = decide_batch(queue, clock.now_ns(), policy, 8)
    assert [item.payload for item in decision.rejected] == ["old"]
    assert len(queue) == 1
    clock.set(50 * US + 10_000 * US)
    assert names(decide_batch(queue, clock.now_ns(), policy, 8).action) == ["new"]


def test_delay_timeout_loses_its_place_not_its_turn() -> None:
    policy = BatchingPolicy(
        max_queue_delay_us=1_000,
        default_queue_policy=QueuePolicy(timeout_action="DELAY", default_timeout_us=100),
    )
    clock = FakeClock()
    queue: PendingQueue[str] = PendingQueue.from_policy(policy)
    push(queue, clock, "late", timeout_us=100)
    push(queue, clock, "b")
    push(queue, clock, "c")
    clock.set(200 * US)
    decision = decide_batch(queue, clock.now_ns(), policy, 2)
    assert decision.rejected == []
    assert names(decision.action) == ["b", "c"]
    clock.set(2000 * US)
    assert names(decide_batch(queue, clock.now_ns(), policy, 2).action) == ["late"]


def test_timed_out_items_already_served_are_ignored() -> None:
    policy = BatchingPolicy(default_queue_policy=QueuePolicy(default_timeout_us=100))
    clock = FakeClock()
    queue: PendingQueue[str] = PendingQueue.from_policy(policy)
    push(queue, clock, "a", timeout_us=100)
    assert names(decide_batch(queue, clock.now_ns(), policy, 8).action) == ["a"]
    clock.advance(1_000 * US)
    decision = decide_batch(queue, clock.now_ns(), policy, 8)
    assert isinstance(decision.action, Idle) and decision.rejected == []
    assert queue.next_deadline_ns() == 0


def test_max_queue_size_per_level() -> None:
    policy = BatchingPolicy(
        priority_levels=2,
        default_priority_level=1,
        priority_queue_policy={2: QueuePolicy(max_queue_size=1)},
    )
    clock = FakeClock()
    queue: PendingQueue[str] = PendingQueue.from_policy(policy)
    assert not queue.is_full(2)
    push(queue, clock, "x", priority=2)
    assert queue.is_full(2)
    push(queue, clock, "y", priority=1)
    assert not queue.is_full(1)


def test_a_single_oversized_item_does_not_block_the_queue() -> None:
    policy = BatchingPolicy()
    clock = FakeClock()
    queue: PendingQueue[str] = PendingQueue.from_policy(policy)
    push(queue, clock, "big", rows=9)
    push(queue, clock, "small", rows=1)
    assert names(decide_batch(queue, clock.now_ns(), policy, 8).action) == ["big"]
    assert names(decide_batch(queue, clock.now_ns(), policy, 8).action) == ["small"]
