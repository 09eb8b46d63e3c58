"""One admission for every scheduler: the bound on requests held, and the unloading refusal.

The backend schedulers are covered through their own tests (test_scheduler.py); here the helper
itself and a composite scheduler, which used to keep its own count and its own errors.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from packserve.core.admission import Admission
from packserve.core.composite import CompositeScheduler
from packserve.core.observer_fanout import ObserverFanout
from packserve.errors import InFlightLimitError, QueueFullError, ServerShuttingDownError, UnavailableError
from packserve.frontends.status import grpc_status, http_status
from packserve.messages import InferRequest, InferResponse, Tensor
from packserve.model_spec import ModelSpec, VersionPolicy


def test_the_bound_refuses_with_its_own_error_and_counts_nothing() -> None:
    admission = Admission("m", "1", max_pending=2)
    for _ in range(2):
        admission.check()
        admission.admit()
    with pytest.raises(InFlightLimitError, match=r"model 'm' queue is full \(2 requests pending, limit 2\)"):
        admission.check()
    assert admission.pending == 2
    admission.release()
    admission.check()  # room again


def test_the_in_flight_bound_is_not_the_batchers_queue_and_answers_the_same_status() -> None:
    error = InFlightLimitError("model 'm' queue is full (1 requests pending, limit 1)")
    assert not isinstance(error, QueueFullError)
    assert (http_status(error), grpc_status(error)) == (503, grpc.StatusCode.UNAVAILABLE)
    assert error.reason == QueueFullError.reason


def test_a_bound_below_one_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_pending must be at least 1"):
        Admission("m", "1", max_pending=0)


async def test_drain_waits_for_the_last_release_then_unloading_refuses() -> None:
    admission = Admission("m", "3", max_pending=4)
    admission.admit()
    admission.close()
    with pytest.raises(UnavailableError, match=r"^model 'm' version 3 is unloading$"):
        admission.check()
    assert not await admission.drain(0.01)  # still held
    draining = asyncio.ensure_future(admission.drain(10.0))
    await asyncio.sleep(0)
    admission.release()
    assert await draining


class _Gated(CompositeScheduler):
    """A composite whose requests wait for a gate: nothing else of a real one matters here."""

    gate: asyncio.Event

    async def _run(self, request: InferRequest) -> dict[str, Tensor]:
        await self.gate.wait()
        return {}


def _composite(max_pending: int) -> _Gated:
    spec = ModelSpec(
        name="ens",
        platform="ensemble",
        backend="",
        max_batch_size=0,
        inputs=(),
        outputs=(),
        dynamic_batching=None,
        instance_groups=(),
        version_policy=VersionPolicy(),
        default_model_filename="",
    )

    class NoDispatch:
        async def infer(self, request: InferRequest) -> InferResponse:
            raise AssertionError("not called")

        def model_spec(self, name: str) -> ModelSpec:
            raise AssertionError("not called")

    scheduler = _Gated(
        spec, version="1", dispatcher=NoDispatch(), observer=ObserverFanout([]), max_pending=max_pending
    )
    scheduler.gate = asyncio.Event()
    return scheduler


async def test_a_composite_admits_like_every_scheduler() -> None:
    scheduler = _composite(max_pending=1)
    first = asyncio.ensure_future(scheduler.submit(InferRequest("ens", {})))
    await asyncio.sleep(0)
    assert scheduler.pending == 1
    with pytest.raises(InFlightLimitError, match=r"model 'ens' queue is full \(1 requests pending, limit 1\)"):
        await scheduler.submit(InferRequest("ens", {}))
    closing = asyncio.ensure_future(scheduler.close(10.0))
    await asyncio.sleep(0)
    # The same refusal as a backend model's while unloading (it was "server is shutting down"'s type).
    with pytest.raises(UnavailableError, match=r"^model 'ens' version 1 is unloading$") as refused:
        await scheduler.submit(InferRequest("ens", {}))
    assert not isinstance(refused.value, ServerShuttingDownError)
    scheduler.gate.set()
    assert await first == {}
    await closing
    assert scheduler.pending == 0
