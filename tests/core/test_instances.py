"""InstancePool: one worker thread per instance, timing, error conversion, close."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from packserve.backends.base import BackendInstance, BatchResult, ExecutionTimer
from packserve.core.clock import FakeClock
from packserve.core.inline_policy import InlineExecutionPolicy
from packserve.core.instances import ExecutionOutcome, InstancePool
from packserve.errors import ModelExecutionError
from packserve.messages import InferRequest
from tests.fakes.core import DoublingInstance, make_request


class OddInstance(BackendInstance):
    """Returns what it is told to, to exercise the pool's checks of backend answers."""

    def __init__(self, answer: object) -> None:
        self.answer = answer

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        return self.answer  # type: ignore[return-value]


async def test_run_returns_results_and_fills_timing() -> None:
    pool = InstancePool("simple", [DoublingInstance()], batching=True)
    try:
        requests = [make_request(rows=2, value=1.0), make_request(rows=3, value=2.0)]
        results = await pool.run(requests)
        assert [r["OUTPUT0"].shape for r in results] == [(2, 4), (3, 4)]  # type: ignore[index]
        for request in requests:
            t = request.timing
            assert t.batch_size == 5
            assert 0 < t.compute_start_ns <= t.compute_input_end_ns
            assert t.compute_input_end_ns <= t.compute_infer_end_ns <= t.compute_end_ns
        assert pool.free_count == 1
    finally:
        pool.close()


async def test_phases_fall_back_when_the_backend_marks_none() -> None:
    clock = FakeClock(1_000)
    pool = InstancePool("simple", [DoublingInstance(mark_phases=False)], batching=True, clock=clock)
    try:
        request = make_request()
        await pool.run([request])
        t = request.timing
        # All compute time counts as inference; the phases still add up.
        assert t.compute_input_end_ns == t.compute_start_ns
        assert t.compute_infer_end_ns == t.compute_end_ns
        phases = t.compute_input_ns + t.compute_infer_ns + t.compute_output_ns
        assert phases == t.compute_end_ns - t.compute_start_ns
    finally:
        pool.close()


async def test_each_instance_has_its_own_thread_and_free_count_tracks_work() -> None:
    gate = threading.Event()
    instances = [DoublingInstance(gate), DoublingInstance(gate)]
    pool = InstancePool("simple", instances, batching=True, names=["simple_0_0", "simple_0_1"])
    try:
        done: list[ExecutionOutcome] = []
        pool.start([make_request()], done.append)
        assert pool.free_count == 1
        pool.start([make_request()], done.append)
        assert pool.free_count == 0
        for instance in instances:
            assert await asyncio.to_thread(instance.started.acquire, True, 5)
        gate.set()
        while len(done) < 2:
            await asyncio.sleep(0.005)
        assert pool.free_count == 2
        assert {o.instance_index for o in done} == {0, 1}
        assert instances[0].threads == {"packserve-simple_0_0"}
        assert instances[1].threads == {"packserve-simple_0_1"}
    finally:
        gate.set()
        pool.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ([], "returned 0 results for a batch of 1 requests"),
        ("nope", "returned str results"),
        ([ValueError("bad pixel")], "execution failed: bad pixel"),
        ([42], "returned int instead of outputs"),
    ],
)
async def test_bad_backend_answers_become_execution_errors(answer: object, message: str) -> None:
    pool = InstancePool("weird", [OddInstance(answer)])
    try:
        (result,) = await pool.run([make_request()])
        assert isinstance(result, ModelExecutionError)
        assert "model 'weird'" in str(result) and message in str(result)
    finally:
        pool.close()


async def test_close_joins_workers_and_closes_instances() -> None:
    instances = [DoublingInstance(), DoublingInstance()]
    pool = InstancePool("simple", instances)
    await pool.run([make_request()])
    pool.close()
    assert all(instance.closed for instance in instances)
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("packserve-simple_"))
    with pytest.raises(RuntimeError, match="closed"):
        pool.start([make_request()], lambda outcome: None)


def test_a_pool_needs_instances() -> None:
    with pytest.raises(ValueError, match="at least one instance"):
        InstancePool("empty", [])


class InlineDoubling(DoublingInstance):
    """A DoublingInstance that allows inline execution; a request with parameter "burn_ms" makes
    it spend that much CPU time."""

    @property
    def may_run_inline(self) -> bool:
        return True

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        for request in requests:
            burn_ms = request.parameters.get("burn_ms")
            if burn_ms:
                until = time.thread_time_ns() + int(burn_ms * 1e6)
                while time.thread_time_ns() < until:
                    pass
        return super().execute(requests, timer)


def _cheap_pool(*instances: BackendInstance, window: int = 2) -> InstancePool:
    pool = InstancePool("simple", list(instances), batching=True, inline_threshold_ns=1_000_000)
    pool.inline_policy = InlineExecutionPolicy(1_000_000, window=window)  # decide quickly
    return pool


async def _pool_gone_inline(instance: InlineDoubling) -> InstancePool:
    """A pool of `instance` that has run enough cheap batches to have moved inline."""
    pool = _cheap_pool(instance)
    for _ in range(2):
        await pool.run([make_request()])
    assert pool.inline_policy.inline
    return pool


async def test_cheap_batches_move_onto_the_event_loop_thread() -> None:
    instance = InlineDoubling()
    pool = await _pool_gone_inline(instance)
    try:
        instance.threads.clear()
        results = await pool.run([make_request(value=3.0)])
        assert instance.threads == {threading.current_thread().name}
        np.testing.assert_array_equal(results[0]["OUTPUT0"], np.full((1, 4), 6.0))  # type: ignore[index]
        assert pool.free_count == 1
    finally:
        pool.close()


async def test_instances_that_do_not_allow_it_never_run_inline() -> None:
    instance = DoublingInstance()
    pool = InstancePool("simple", [instance], batching=True, inline_threshold_ns=10**12)
    try:
        for _ in range(40):
            await pool.run([make_request()])
        assert not pool.inline_policy.enabled
        assert threading.current_thread().name not in instance.threads
    finally:
        pool.close()


async def test_one_instance_allowing_it_is_not_enough() -> None:
    pool = InstancePool("simple", [InlineDoubling(), DoublingInstance()], inline_threshold_ns=10**12)
    try:
        assert not pool.inline_policy.enabled
    finally:
        pool.close()


async def test_an_expensive_inline_batch_sends_the_model_back_to_its_workers() -> None:
    instance = InlineDoubling()
    pool = await _pool_gone_inline(instance)
    try:
        # 10 ms of CPU is over 8 x the 1 ms threshold: the trial ends after this batch.
        await pool.run([make_request(parameters={"burn_ms": 10})])
        assert not pool.inline_policy.inline
        instance.threads.clear()
        await pool.run([make_request()])
        assert instance.threads == {"packserve-simple_0"}
    finally:
        pool.close()


async def test_inline_mode_still_runs_one_batch_per_instance_at_a_time() -> None:
    gate = threading.Event()
    instance = InlineDoubling(gate=gate)
    pool = _cheap_pool(instance, window=1)
    gate.set()
    try:
        await pool.run([make_request()])
        assert pool.inline_policy.inline
        # Back on the worker for one gated batch, then inline again: a batch started while the
        # instance is still busy on its worker must queue behind it there, not run beside it.
        pool.inline_policy.inline = False
        gate.clear()
        while instance.started.acquire(blocking=False):
            pass
        loop = asyncio.get_running_loop()
        first: asyncio.Future[ExecutionOutcome] = loop.create_future()
        pool.start([make_request()], first.set_result)
        assert await asyncio.to_thread(instance.started.acquire, True, 10)
        pool.inline_policy.inline = True
        second: asyncio.Future[ExecutionOutcome] = loop.create_future()
        pool.start([make_request()], second.set_result)
        await asyncio.sleep(0.05)
        assert not second.done()  # queued on the busy worker, not run inline next to it
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, second), 10)
        assert threading.current_thread().name not in instance.threads
    finally:
        gate.set()
        pool.close()
