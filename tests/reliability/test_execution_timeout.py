"""Execution deadlines (`execution_timeout_s`): a hung or spinning model answers 504 /
DEADLINE_EXCEEDED instead of holding its requests forever, and unload / SIGTERM keep to the drain
timeout even with a hung model (before: requests hung forever, unload took 35 s and SIGTERM with
--drain-timeout 2 exited after 36 s with code 0)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests

from packserve.backends.base import BackendInstance, BatchResult, ExecutionTimer
from packserve.backends.limits import DEFAULT_PYTHON_TIMEOUT_S, execution_limits
from packserve.core.instances import InstancePool
from packserve.errors import ConfigError, ExecutionTimeoutError, UnavailableError
from packserve.frontends.status import grpc_status, http_status
from packserve.messages import InferRequest
from packserve.model_spec import ModelSpec, VersionPolicy
from tests.e2e.e2e_server import start_live_server
from tests.reliability.faulty_models import TRIGGER, row, write_faulty_model
from tests.reliability.reliability_engine import (
    EngineStarter,
    double,
    index_entry,
    serves_again,
    write_python_add,
)


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[EngineStarter]:
    starter = EngineStarter(tmp_path)
    yield starter
    await starter.stop_all()


def test_deadline_errors_are_504_and_deadline_exceeded() -> None:
    error = ExecutionTimeoutError("late")
    assert http_status(error) == 504
    assert grpc_status(error) == grpc.StatusCode.DEADLINE_EXCEEDED


def spec(backend: str, **parameters: str) -> ModelSpec:
    return ModelSpec(
        name="m",
        platform="",
        backend=backend,
        max_batch_size=0,
        inputs=(),
        outputs=(),
        dynamic_batching=None,
        instance_groups=(),
        version_policy=VersionPolicy(),
        default_model_filename="model.py",
        parameters=parameters,
    )


def test_defaults_and_refusals() -> None:
    assert execution_limits(spec("python")).execution_timeout_s == DEFAULT_PYTHON_TIMEOUT_S
    assert execution_limits(spec("onnxruntime")).execution_timeout_s == 0
    assert execution_limits(spec("onnxruntime", execution_timeout_s="2.5")).execution_timeout_s == 2.5
    for bad in ("soon", "-1", "inf"):
        with pytest.raises(ConfigError, match="execution_timeout_s"):
            execution_limits(spec("python", execution_timeout_s=bad))
    with pytest.raises(ConfigError, match="python models only"):
        execution_limits(spec("onnxruntime", isolation="process"))
    with pytest.raises(ConfigError, match="expected 'process' or 'none'"):
        execution_limits(spec("python", isolation="vm"))
    with pytest.raises(ConfigError, match="needs 'isolation: process'"):
        execution_limits(spec("python", max_rss_mb="100"))


async def test_hung_in_process_model_answers_504_and_is_set_aside(
    tmp_path: Path, engines: EngineStarter
) -> None:
    write_faulty_model(tmp_path, "hangs", "hang", execution_timeout_s="1")
    write_python_add(tmp_path, "other")
    engine = await engines.start()
    np.testing.assert_array_equal(await double(engine, "hangs"), row(4.0))
    queued = asyncio.create_task(double(engine, "hangs"))  # waits behind the hung batch
    with pytest.raises(ExecutionTimeoutError, match="exceeded its deadline of 1 s"):
        await double(engine, "hangs", TRIGGER)
    with pytest.raises(UnavailableError):
        await queued
    # Its only instance is stuck: the model shows UNAVAILABLE with the reason, others serve.
    state, reason = index_entry(engine, "hangs")
    assert state == "UNAVAILABLE" and "exceeded its deadline" in reason
    assert not engine.model_ready("hangs")
    with pytest.raises(UnavailableError, match="exceeded its deadline"):
        await double(engine, "hangs")
    np.testing.assert_array_equal(await double(engine, "other"), row(4.0))
    started = time.monotonic()
    await engine.repository.unload("hangs")
    assert time.monotonic() - started < 15  # drain 2 s + 1 s join; before: 35 s


async def test_hung_isolated_model_is_killed_and_restarted(tmp_path: Path, engines: EngineStarter) -> None:
    write_faulty_model(tmp_path, "hangs", "hang", execution_timeout_s="1", isolation="process")
    engine = await engines.start()
    with pytest.raises(ExecutionTimeoutError, match="its worker process was killed"):
        await double(engine, "hangs", TRIGGER)
    np.testing.assert_array_equal(await serves_again(engine, "hangs"), row(4.0))


def test_sigterm_with_hung_models_exits_within_the_drain_timeout(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    write_faulty_model(repository, "hangs_here", "hang")
    write_faulty_model(repository, "hangs_apart", "hang", isolation="process")
    server = start_live_server(repository, tmp_path, extra_args=["--drain-timeout", "2"])
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [TRIGGER, 0, 0, 0]}]}
    answers: dict[str, int] = {}

    def hung_call(model: str) -> None:
        session = requests.Session()
        session.trust_env = False
        url = f"{server.http_base}/v2/models/{model}/infer"
        try:
            answers[model] = session.post(url, json=body, timeout=60).status_code
        except requests.ConnectionError:
            answers[model] = 0  # the connection closed unanswered

    callers = [threading.Thread(target=hung_call, args=(m,)) for m in ("hangs_here", "hangs_apart")]
    for caller in callers:
        caller.start()
    time.sleep(1.0)
    started = time.monotonic()
    code = server.terminate(timeout_s=30)
    took = time.monotonic() - started
    for caller in callers:
        caller.join(30)
    # Like Triton at its exit timeout: work abandoned means a non-zero exit.
    assert code == 1, server.log()[-2000:]
    assert took < 15, f"exit took {took:.1f}s with --drain-timeout 2"  # before: 36 s
    assert "requests still in flight" in server.log()
    # Both hung callers are answered before the exit (Triton closes their connections).
    assert answers == {"hangs_here": 503, "hangs_apart": 503}


class _GatedInstance(BackendInstance):
    """Blocks in execute until released: a model stuck past its deadline that comes back."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        if not self.gate.wait(30):
            raise RuntimeError("never released")
        return [{"OUTPUT0": request.inputs["INPUT0"] * 2} for request in requests]


async def test_a_stuck_instance_serves_again_once_its_execute_returns() -> None:
    instance = _GatedInstance()
    pool = InstancePool("gated", [instance], batching=True, execution_timeout_s=0.4)
    try:
        late = asyncio.ensure_future(pool.run([InferRequest("gated", {"INPUT0": row(1.0)})]))
        behind = asyncio.ensure_future(pool.run([InferRequest("gated", {"INPUT0": row(2.0)})]))
        [late_result] = await asyncio.wait_for(late, 30)
        assert isinstance(late_result, ExecutionTimeoutError)
        [behind_result] = await asyncio.wait_for(behind, 30)
        assert isinstance(behind_result, UnavailableError)  # queued behind the stuck batch
        assert pool.failed_reason is not None and "exceeded its deadline of 0.4 s" in pool.failed_reason
        assert pool.free_count == 1  # counted free: what is handed to it fails at once
        [refused] = await pool.run([InferRequest("gated", {"INPUT0": row(3.0)})])
        assert isinstance(refused, UnavailableError)
        instance.gate.set()  # the model finally returns
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while pool.failed_reason is not None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert pool.failed_reason is None
        [served] = await pool.run([InferRequest("gated", {"INPUT0": row(4.0)})])
        np.testing.assert_array_equal(served["OUTPUT0"], row(8.0))  # type: ignore[index]
        assert pool.free_count == 1
    finally:
        instance.gate.set()
        await asyncio.to_thread(pool.close, 5.0)


@pytest.mark.parametrize("isolation", ["none", "process"])
async def test_unload_answers_a_request_hung_without_a_deadline(
    tmp_path: Path, engines: EngineStarter, isolation: str
) -> None:
    write_faulty_model(tmp_path, "hangs", "hang", execution_timeout_s="0", isolation=isolation)
    engine = await engines.start()
    hung = asyncio.ensure_future(double(engine, "hangs", TRIGGER))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    await engine.repository.unload("hangs")  # drain 2 s, then the batch is abandoned
    assert time.monotonic() - started < 15
    with pytest.raises(UnavailableError, match="unloaded while executing"):
        await asyncio.wait_for(hung, 15)  # before: never answered
