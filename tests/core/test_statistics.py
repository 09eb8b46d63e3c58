"""Statistics counted as Triton counts them."""

from __future__ import annotations

import asyncio

from packserve.core.instances import InstancePool
from packserve.core.scheduler import create_scheduler
from packserve.core.statistics import StatisticsCollector
from packserve.errors import ModelExecutionError
from packserve.messages import RequestTiming
from packserve.model_spec import BatchingPolicy
from tests.fakes.core import DoublingInstance, make_request, make_spec


def timing(queue: int, cin: int, infer: int, cout: int, batch: int = 1) -> RequestTiming:
    t = RequestTiming(received_ns=100, queue_start_ns=200)
    t.compute_start_ns = t.queue_start_ns + queue
    t.compute_input_end_ns = t.compute_start_ns + cin
    t.compute_infer_end_ns = t.compute_input_end_ns + infer
    t.compute_end_ns = t.compute_infer_end_ns + cout
    t.completed_ns = t.compute_end_ns + 50
    t.batch_size = batch
    return t


def test_successes_failures_and_batches_are_counted() -> None:
    stats = StatisticsCollector(wall_clock_ms=lambda: 1234)
    t1 = timing(10, 20, 30, 40, batch=3)
    t2 = timing(5, 20, 30, 40, batch=3)
    stats.execution_finished("m", "1", 3, t1)
    stats.request_finished("m", "1", t1, None)
    stats.request_finished("m", "1", t2, None)
    stats.request_finished("m", "1", timing(1000, 1, 1, 1), "REJECTED")
    stats.execution_finished("m", "1", 1, timing(0, 1, 2, 3))

    snap = stats.snapshot("m", "1")
    assert (snap.name, snap.version, snap.last_inference_ms) == ("m", "1", 1234)
    assert snap.inference_count == 4 and snap.execution_count == 2
    s = snap.inference_stats
    assert (s.success.count, s.success.ns) == (2, t1.total_ns + t2.total_ns)
    assert s.fail.count == 1
    # Only successful requests count their queue and compute time.
    assert (s.queue.count, s.queue.ns) == (2, 15)
    assert (s.compute_input.count, s.compute_input.ns) == (2, 40)
    assert (s.compute_infer.count, s.compute_infer.ns) == (2, 60)
    assert (s.compute_output.count, s.compute_output.ns) == (2, 80)
    assert [b.batch_size for b in snap.batch_stats] == [1, 3]
    assert (snap.batch_stats[1].compute_infer.count, snap.batch_stats[1].compute_infer.ns) == (1, 30)


def test_unknown_models_are_zero_and_reload_resets() -> None:
    stats = StatisticsCollector()
    assert stats.snapshot("x", "1").execution_count == 0
    stats.execution_finished("x", "1", 2, timing(0, 1, 1, 1))
    stats.model_loaded("x", "1", 0.5)
    assert stats.snapshot("x", "1").inference_count == 0
    stats.execution_finished("x", "1", 2, timing(0, 1, 1, 1))
    stats.model_unloaded("x", "1")
    assert stats.snapshot("x", "1").inference_count == 0


async def test_statistics_add_up_through_a_scheduler() -> None:
    """The engine's part (request_finished) is played here by the test."""
    spec = make_spec(dynamic_batching=BatchingPolicy(max_queue_delay_us=2000))
    stats = StatisticsCollector()
    pool = InstancePool("simple", [DoublingInstance()], batching=True)
    scheduler = create_scheduler(spec, version="1", pool=pool, observer=stats)

    async def infer(rows: int, fail: bool) -> None:
        request = make_request(rows=rows, parameters={"raise": True} if fail else {})
        request.timing.received_ns = request.timing.queue_start_ns or 1
        try:
            await scheduler.submit(request)
            error = None
        except ModelExecutionError as exc:
            error = exc.reason
        request.timing.completed_ns = request.timing.compute_end_ns
        stats.request_finished("simple", "1", request.timing, error)

    try:
        await asyncio.gather(*(infer(rows=1 + i % 3, fail=False) for i in range(30)))
        await infer(rows=2, fail=True)
    finally:
        await scheduler.close(1.0)
        pool.close()
    snap = stats.snapshot("simple", "1")
    assert snap.inference_stats.success.count == 30
    assert snap.inference_stats.fail.count == 1
    assert snap.inference_count == sum(1 + i % 3 for i in range(30))
    assert snap.execution_count == sum(b.compute_infer.count for b in snap.batch_stats)
    assert snap.execution_count < 30
    assert all(b.batch_size <= 8 for b in snap.batch_stats)
