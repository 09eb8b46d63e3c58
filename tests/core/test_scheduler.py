"""Schedulers over a real InstancePool with fake backend instances."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from packserve.core.instances import InstancePool
from packserve.core.scheduler import Scheduler, create_scheduler
from packserve.core.scheduler_direct import DirectScheduler
from packserve.core.scheduler_dynamic import DynamicBatchScheduler
from packserve.errors import (
    InFlightLimitError,
    InvalidArgumentError,
    ModelExecutionError,
    QueueFullError,
    RequestTimeoutError,
    UnavailableError,
)
from packserve.model_spec import BatchingPolicy, ModelSpec, QueuePolicy
from tests.fakes.core import DoublingInstance, RecordingObserver, make_request, make_spec


class Harness:
    def __init__(self, spec: ModelSpec, instances: int = 1, gated: bool = False, max_pending: int = 4096):
        self.gate = threading.Event() if gated else None
        self.instances = [DoublingInstance(self.gate) for _ in range(instances)]
        self.pool = InstancePool(spec.name, self.instances, batching=spec.batching)
        self.observer = RecordingObserver()
        self.scheduler: Scheduler = create_scheduler(
            spec, version="1", pool=self.pool, observer=self.observer, max_pending=max_pending
        )

    def submit(self, **kwargs: object) -> asyncio.Task[dict[str, np.ndarray]]:
        return asyncio.ensure_future(self.scheduler.submit(make_request(**kwargs)))  # type: ignore[arg-type]

    async def wait_started(self, instance: int = 0) -> None:
        assert await asyncio.to_thread(self.instances[instance].started.acquire, True, 5)

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set()

    def executions(self) -> list[int]:
        return [len(batch) for inst in self.instances for batch in inst.batches]


MakeHarness = Callable[..., Harness]


@pytest.fixture
async def harnesses() -> AsyncIterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(*args: object, **kwargs: object) -> Harness:
        harness = Harness(*args, **kwargs)  # type: ignore[arg-type]
        made.append(harness)
        return harness

    yield make
    for harness in made:
        if harness.gate is not None:
            harness.gate.set()
        await harness.scheduler.close(1.0)
        harness.pool.close()


def dynamic(**policy: object) -> ModelSpec:
    return make_spec(dynamic_batching=BatchingPolicy(**policy))  # type: ignore[arg-type]


def test_factory_picks_the_scheduler_from_the_config() -> None:
    pool = InstancePool("simple", [DoublingInstance()])
    try:
        observer = RecordingObserver()
        made = [
            create_scheduler(spec, version="1", pool=pool, observer=observer)
            for spec in (dynamic(), make_spec(), make_spec(max_batch_size=0, dynamic_batching=BatchingPolicy()))
        ]
        assert [type(scheduler) for scheduler in made] == [
            DynamicBatchScheduler,
            DirectScheduler,
            DirectScheduler,
        ]
    finally:
        pool.close()


async def test_concurrent_requests_are_batched_and_get_their_own_outputs(harnesses: MakeHarness) -> None:
    h = harnesses(dynamic(max_queue_delay_us=2000))
    values = [float(i) for i in range(64)]
    outputs = await asyncio.gather(*(h.scheduler.submit(make_request(value=v)) for v in values))
    for value, out in zip(values, outputs, strict=True):
        np.testing.assert_array_equal(out["OUTPUT0"], np.full((1, 4), 2 * value, np.float32))
    sizes = h.executions()
    assert sum(sizes) == 64
    assert len(sizes) < 64
    assert max(sizes) <= 8
    assert [size for _, _, size in h.observer.executions] == sizes
    assert h.observer.queue_sizes[-1] == 0 and h.scheduler.pending == 0


async def test_multi_row_requests_respect_max_batch_size(harnesses: MakeHarness) -> None:
    h = harnesses(dynamic(max_queue_delay_us=1000))
    rows = [3, 5, 2, 8, 1, 4, 4, 7]
    outputs = await asyncio.gather(*(h.scheduler.submit(make_request(rows=r)) for r in rows))
    assert [out["OUTPUT0"].shape[0] for out in outputs] == rows
    for inst in h.instances:
        for batch in inst.batches:
            assert sum(r.inputs["INPUT0"].shape[0] for r in batch) <= 8
    assert sum(size for _, _, size in h.observer.executions) == sum(rows)


async def test_queue_full_is_refused_immediately(harnesses: MakeHarness) -> None:
    spec = dynamic(default_queue_policy=QueuePolicy(max_queue_size=2))
    h = harnesses(spec, gated=True)
    running = h.submit()
    await h.wait_started()
    queued = [h.submit(), h.submit()]
    await asyncio.sleep(0)
    with pytest.raises(QueueFullError, match=r"model 'simple' queue is full \(max_queue_size 2\)"):
        await h.scheduler.submit(make_request())
    assert h.scheduler.pending == 3
    h.release()
    await asyncio.gather(running, *queued)


async def test_global_max_pending_bounds_admission(harnesses: MakeHarness) -> None:
    h = harnesses(make_spec(), gated=True, max_pending=2)
    first, second = h.submit(), h.submit()
    await asyncio.sleep(0)
    # Its own error, not the dynamic batcher's max_queue_size one; the same words and status.
    with pytest.raises(InFlightLimitError, match=r"model 'simple' queue is full \(2 requests pending, limit 2\)"):
        await h.scheduler.submit(make_request())
    h.release()
    await asyncio.gather(first, second)


async def test_n_instances_run_n_batches_at_once(harnesses: MakeHarness) -> None:
    h = harnesses(dynamic(), instances=2, gated=True)
    first = h.submit(value=1.0)
    await h.wait_started(0)
    second = h.submit(value=2.0)
    # The second batch starts on the other instance while the first is still held.
    await h.wait_started(1)
    h.release()
    out1, out2 = await asyncio.gather(first, second)
    assert out1["OUTPUT0"][0, 0] == 2.0 and out2["OUTPUT0"][0, 0] == 4.0
    assert h.instances[0].threads != h.instances[1].threads


async def test_direct_scheduler_runs_each_request_alone(harnesses: MakeHarness) -> None:
    h = harnesses(make_spec(), instances=2)
    outputs = await asyncio.gather(*(h.scheduler.submit(make_request(value=float(i))) for i in range(8)))
    assert [out["OUTPUT0"][0, 0] for out in outputs] == [2.0 * i for i in range(8)]
    assert h.executions() == [1] * 8


async def test_direct_scheduler_for_a_non_batching_model(harnesses: MakeHarness) -> None:
    h = harnesses(make_spec(max_batch_size=0))
    out = await h.scheduler.submit(make_request(batching=False, value=3.0))
    np.testing.assert_array_equal(out["OUTPUT0"], np.full((4,), 6.0, np.float32))
    assert h.observer.executions == [("simple", "1", 1)]


async def test_a_failing_request_fails_only_itself(harnesses: MakeHarness) -> None:
    h = harnesses(dynamic(max_queue_delay_us=100_000, preferred_batch_sizes=(3,)))
    good1 = h.submit(value=1.0)
    bad = h.submit(parameters={"fail": True}, id="r2")
    good2 = h.submit(value=5.0)
    results = await asyncio.gather(good1, bad, good2, return_exceptions=True)
    assert h.executions() == [3]
    assert results[0]["OUTPUT0"][0, 0] == 2.0  # type: ignore[index]
    assert isinstance(results[1], InvalidArgumentError) and "request r2 is bad" in str(results[1])
    assert results[2]["OUTPUT0"][0, 0] == 10.0  # type: ignore[index]


async def test_execution_exception_fails_the_batch_and_the_worker_survives(harnesses: MakeHarness) -> None:
    h = harnesses(dynamic(max_queue_delay_us=100_000, preferred_batch_sizes=(2,)))
    results = await asyncio.gather(
        h.submit(parameters={"raise": True}), h.submit(), return_exceptions=True
    )
    for result in results:
        assert isinstance(result, ModelExecutionError)
        assert "model 'simple'" in str(result) and "CUDA went away" in str(result)
    assert results[0] is not results[1]
    assert h.observer.executions == []  # a failed execution is not counted
    assert h.scheduler.pending == 0
    out = await h.scheduler.submit(make_request(value=2.0))
    assert out["OUTPUT0"][0, 0] == 4.0


async def test_queue_timeout_reject(harnesses: MakeHarness) -> None:
    spec = dynamic(default_queue_policy=QueuePolicy(default_timeout_us=20_000))
    h = harnesses(spec, gated=True)
    running = h.submit()
    await h.wait_started()
    with pytest.raises(RequestTimeoutError, match="model 'simple'"):
        await h.scheduler.submit(make_request())  # the instance is held: it can only time out
    h.release()
    await running
    assert h.scheduler.pending == 0


async def test_request_timeout_override_only_when_allowed(harnesses: MakeHarness) -> None:
    spec = dynamic(default_queue_policy=QueuePolicy(allow_timeout_override=True))
    h = harnesses(spec, gated=True)
    running = h.submit()
    await h.wait_started()
    patient = h.submit()  # no timeout at all
    with pytest.raises(RequestTimeoutError):
        await h.scheduler.submit(make_request(timeout_us=20_000))
    assert not patient.done()
    h.release()
    await asyncio.gather(running, patient)


async def test_delay_timeout_still_runs(harnesses: MakeHarness) -> None:
    spec = dynamic(default_queue_policy=QueuePolicy(timeout_action="DELAY", default_timeout_us=1_000))
    h = harnesses(spec, gated=True)
    running = h.submit()
    await h.wait_started()
    delayed = h.submit(value=4.0)
    await asyncio.sleep(0.02)
    h.release()
    assert (await delayed)["OUTPUT0"][0, 0] == 8.0
    await running


async def test_priorities(harnesses: MakeHarness) -> None:
    spec = make_spec(
        max_batch_size=1,
        dynamic_batching=BatchingPolicy(priority_levels=2, default_priority_level=2),
    )
    h = harnesses(spec, gated=True)
    running = h.submit(id="first")
    await h.wait_started()
    low = h.submit(id="low")
    default = h.submit(id="default", priority=0)
    high = h.submit(id="high", priority=1)
    await asyncio.sleep(0)
    h.release()
    await asyncio.gather(running, low, default, high)
    order = [batch[0].id for batch in h.instances[0].batches]
    assert order == ["first", "high", "low", "default"]
    with pytest.raises(InvalidArgumentError, match="priority 3 is out of range"):
        await h.scheduler.submit(make_request(priority=3))


async def test_close_drains_then_refuses(harnesses: MakeHarness) -> None:
    h = harnesses(dynamic(max_queue_delay_us=0), gated=True)
    running = h.submit()
    await h.wait_started()
    queued = h.submit(value=7.0)
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(h.scheduler.close(5.0))
    await asyncio.sleep(0)
    with pytest.raises(UnavailableError, match="unloading"):
        await h.scheduler.submit(make_request())
    assert not closing.done()
    h.release()
    await closing
    await running
    assert (await queued)["OUTPUT0"][0, 0] == 14.0
    assert h.scheduler.pending == 0


async def test_close_gives_up_on_queued_requests_after_the_timeout(harnesses: MakeHarness) -> None:
    h = harnesses(make_spec(), gated=True)
    running = h.submit()
    await h.wait_started()
    queued = h.submit()
    await asyncio.sleep(0)
    await h.scheduler.close(0.05)
    with pytest.raises(UnavailableError, match="unloaded before the request ran"):
        await queued
    h.release()
    await running  # what was executing still finishes
    await asyncio.sleep(0)
    assert h.scheduler.pending == 0


async def test_cancelled_waiters_are_not_executed(harnesses: MakeHarness) -> None:
    h = harnesses(make_spec(), gated=True)
    running = h.submit()
    await h.wait_started()
    abandoned = h.submit(id="gone")
    await asyncio.sleep(0)
    abandoned.cancel()
    h.release()
    await running
    await asyncio.sleep(0.05)
    assert [b[0].id for b in h.instances[0].batches] == [""]
    assert h.scheduler.pending == 0


async def test_timing_is_recorded(harnesses: MakeHarness) -> None:
    h = harnesses(dynamic())
    request = make_request(rows=3)
    await h.scheduler.submit(request)
    t = request.timing
    assert 0 < t.queue_start_ns <= t.compute_start_ns <= t.compute_input_end_ns
    assert t.compute_input_end_ns <= t.compute_infer_end_ns <= t.compute_end_ns
    assert t.batch_size == 3
