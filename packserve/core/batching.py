"""The dynamic batcher's decision, kept apart from running batches (vLLM style).

`decide_batch(queue, now_ns, policy, max_batch_size)` looks at the waiting requests and the time and
answers with a value: run these items now (`Batch`), come back at `until_ns` (`Wait`), or nothing is
queued (`Idle`). It uses no clock, thread or event loop of its own, so the scheduler calls it with
the real monotonic time and the planner's discrete-event simulator calls it with simulated time.
Its only effects are on the queue it is given: items it hands out or rejects leave the queue, and
items whose timeout passed under `timeout_action: DELAY` move behind their level's on-time items.

Ownership: a `PendingQueue` belongs to one scheduler (or one simulated model) and is used from one
thread only (the event-loop thread in the server).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from packserve.model_spec import BatchingPolicy, QueuePolicy

P = TypeVar("P")

_QUEUED = 0
_TAKEN = 1
_REJECTED = 2


@dataclass(slots=True, eq=False)
class PendingItem(Generic[P]):
    """One waiting request as the batcher sees it; `payload` is whatever the caller needs back."""

    enqueue_ns: int
    rows: int  # batch rows this request adds (its first dimension for batching models, else 1)
    deadline_ns: int  # queue timeout: the time it expires; 0 = never
    priority: int  # priority level, 1 = highest
    payload: P
    state: int = _QUEUED


@dataclass(slots=True, eq=False)
class _Level(Generic[P]):
    reject_on_timeout: bool
    max_queue_size: int  # 0 = unbounded by config
    on_time: deque[PendingItem[P]] = field(default_factory=deque)
    # Items whose timeout passed under timeout_action DELAY: served after the on-time ones.
    delayed: deque[PendingItem[P]] = field(default_factory=deque)

    def __len__(self) -> int:
        return len(self.on_time) + len(self.delayed)


class PendingQueue(Generic[P]):
    """Waiting items by priority level (1 = highest), FIFO within a level, O(1) push and pop."""

    __slots__ = ("_deadlines", "_levels", "_seq", "_size")

    def __init__(self, level_policies: list[QueuePolicy]) -> None:
        if not level_policies:
            raise ValueError("a pending queue needs at least one priority level")
        self._levels: list[_Level[P]] = [
            _Level(reject_on_timeout=p.timeout_action != "DELAY", max_queue_size=p.max_queue_size)
            for p in level_policies
        ]
        # (deadline_ns, sequence, item) of items with a timeout; entries of items that already
        # left the queue are skipped lazily.
        self._deadlines: list[tuple[int, int, PendingItem[P]]] = []
        self._seq = 0
        self._size = 0

    @classmethod
    def from_policy(cls, policy: BatchingPolicy) -> PendingQueue[P]:
        """One level per configured priority level (one level when priorities are off)."""
        count = max(1, policy.priority_levels)
        return cls([queue_policy(policy, level) for level in range(1, count + 1)])

    @property
    def level_count(self) -> int:
        return len(self._levels)

    def __len__(self) -> int:
        return self._size

    def level_size(self, level: int) -> int:
        return len(self._levels[level - 1])

    def is_full(self, level: int) -> bool:
        """True when the level holds its configured max_queue_size items (admission control)."""
        lvl = self._levels[level - 1]
        return lvl.max_queue_size > 0 and len(lvl) >= lvl.max_queue_size

    def push(self, item: PendingItem[P]) -> None:
        self._levels[item.priority - 1].on_time.append(item)
        self._size += 1
        if item.deadline_ns > 0:
            self._seq += 1
            heapq.heappush(self._deadlines, (item.deadline_ns, self._seq, item))

    def __iter__(self) -> Iterator[PendingItem[P]]:
        """Items in the order they are served: by level, on-time before delayed, FIFO."""
        for level in self._levels:
            yield from level.on_time
            yield from level.delayed

    def pop_front(self, count: int) -> list[PendingItem[P]]:
        """Remove and return the first `count` items in serving order."""
        taken: list[PendingItem[P]] = []
        for level in self._levels:
            for lane in (level.on_time, level.delayed):
                while lane and len(taken) < count:
                    item = lane.popleft()
                    item.state = _TAKEN
                    taken.append(item)
            if len(taken) >= count:
                break
        self._size -= len(taken)
        return taken

    def next_deadline_ns(self) -> int:
        """The earliest queue timeout of a waiting item; 0 if none has one."""
        heap = self._deadlines
        while heap and (heap[0][2].state != _QUEUED or heap[0][2].deadline_ns == 0):
            heapq.heappop(heap)
        return heap[0][0] if heap else 0

    def expire(self, now_ns: int) -> list[PendingItem[P]]:
        """Apply queue timeouts due by `now_ns`: REJECT levels remove the item and return it,
        DELAY levels move it behind the level's on-time items (it loses its place, not its turn)."""
        rejected: list[PendingItem[P]] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now_ns:
            _, _, item = heapq.heappop(heap)
            if item.state != _QUEUED or item.deadline_ns == 0:
                continue  # already served, rejected or delayed
            level = self._levels[item.priority - 1]
            # O(n) removal, but only for a request that timed out, which is rare.
            level.on_time.remove(item)
            item.deadline_ns = 0
            if level.reject_on_timeout:
                item.state = _REJECTED
                self._size -= 1
                rejected.append(item)
            else:
                level.delayed.append(item)
        return rejected

    def remove_all(self) -> list[PendingItem[P]]:
        """Empty the queue (used when a scheduler gives up draining); returns what was waiting."""
        items = self.pop_front(self._size)
        self._deadlines.clear()
        return items


def queue_policy(policy: BatchingPolicy, level: int) -> QueuePolicy:
    """The queue policy of a priority level: its override if configured, else the default."""
    return policy.priority_queue_policy.get(level, policy.default_queue_policy)


@dataclass(frozen=True, slots=True)
class Batch(Generic[P]):
    """Run these items together now; `rows` is their total batch size."""

    items: list[PendingItem[P]]
    rows: int


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to run yet: decide again at `until_ns` or when something new arrives."""

    until_ns: int


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing is queued."""


IDLE = Idle()


@dataclass(frozen=True, slots=True)
class BatchDecision(Generic[P]):
    action: Batch[P] | Wait | Idle
    # Items whose queue timeout passed under timeout_action REJECT; already out of the queue.
    rejected: list[PendingItem[P]]


def decide_batch(
    queue: PendingQueue[P], now_ns: int, policy: BatchingPolicy, max_batch_size: int
) -> BatchDecision[P]:
    """Decide what to run now, as Triton's dynamic batcher does.

    Items are considered in serving order (priority level, then FIFO) and added while the total
    rows stay within `max_batch_size`. The batch goes now when it is full (or the next item does not
    fit), when its oldest item has waited `max_queue_delay`, or when it reached a preferred batch
    size (the largest one reached is taken); otherwise the answer is to wait. A single item larger
    than `max_batch_size` (validation prevents it) goes alone rather than blocking the queue.

    Not pure: it changes `queue` in exactly two ways. Timeouts due by `now_ns` are applied
    (`PendingQueue.expire`: REJECT items leave the queue and come back as `rejected`, DELAY items
    move behind their level's on-time items), and a decision to run pops the batch's items off the
    queue front. Waiting and idle decisions take nothing else. It reads no clock, so the planner's
    simulator drives it with a fake one.
    """
    rejected = queue.expire(now_ns)
    if len(queue) == 0:
        return BatchDecision(IDLE, rejected)

    preferred = policy.preferred_batch_sizes
    rows = 0
    count = 0
    oldest_ns = now_ns
    best_preferred_count = 0
    best_preferred_rows = 0
    full = False
    for item in queue:
        if rows + item.rows > max_batch_size and count > 0:
            full = True  # the next item does not fit: what we have is as big as it gets
            break
        rows += item.rows
        count += 1
        if item.enqueue_ns < oldest_ns:
            oldest_ns = item.enqueue_ns
        if rows in preferred:
            best_preferred_count = count
            best_preferred_rows = rows
        if rows >= max_batch_size:
            full = True
            break

    delay_ns = policy.max_queue_delay_us * 1000
    waited_enough = now_ns - oldest_ns >= delay_ns
    if full or waited_enough:
        return BatchDecision(Batch(queue.pop_front(count), rows), rejected)
    if best_preferred_count:
        return BatchDecision(Batch(queue.pop_front(best_preferred_count), best_preferred_rows), rejected)

    until_ns = oldest_ns + delay_ns
    deadline_ns = queue.next_deadline_ns()
    if 0 < deadline_ns < until_ns:
        until_ns = deadline_ns
    return BatchDecision(Wait(until_ns), rejected)
