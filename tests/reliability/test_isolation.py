"""Process isolation of python models (`isolation: process`): a crash, os._exit, segfault or
GIL-hungry loop in one model fails only that model's requests; BLS still works from inside.

Before isolation existed, os._exit / segfault in a python model ended the whole server (here: the
pytest process itself would die), and a pure-Python spin starved every other model of the GIL.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from packserve.backends import worker_processes
from packserve.backends.python import isolated
from packserve.errors import ExecutionTimeoutError, ModelExecutionError, UnavailableError
from packserve.messages import InferRequest
from tests.e2e.e2e_server import start_live_server
from tests.reliability.faulty_models import TRIGGER, row, write_faulty_model
from tests.reliability.reliability_engine import EngineStarter, double, serves_again, write_python_add

ISOLATED = {"isolation": "process"}


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[EngineStarter]:
    starter = EngineStarter(tmp_path)
    yield starter
    await starter.stop_all()


async def test_isolated_model_answers_as_in_process(tmp_path: Path, engines: EngineStarter) -> None:
    write_python_add(tmp_path, "inproc")
    write_python_add(tmp_path, "isolated", **ISOLATED)
    engine = await engines.start()
    batch = np.arange(24, dtype=np.float32).reshape(6, 4)
    for model in ("inproc", "isolated"):
        response = await engine.infer(InferRequest(model, {"INPUT0": batch}))
        np.testing.assert_array_equal(response.outputs["OUTPUT0"], batch * 2)
    # A TritonError in one response fails that request only, with the model's message.
    with pytest.raises(ModelExecutionError, match="must not contain negative values"):
        await engine.infer(InferRequest("isolated", {"INPUT0": -batch[:1] - 1}))
    np.testing.assert_array_equal(await double(engine, "isolated"), row(4.0))


@pytest.mark.parametrize(("fault", "how"), [("exit", "exited with code 1"), ("segv", "SIGSEGV")])
async def test_crash_fails_only_that_model_and_the_worker_restarts(
    tmp_path: Path, engines: EngineStarter, fault: str, how: str
) -> None:
    write_faulty_model(tmp_path, "faulty", fault, **ISOLATED)
    write_python_add(tmp_path, "other")
    engine = await engines.start()
    np.testing.assert_array_equal(await double(engine, "faulty"), row(4.0))
    with pytest.raises(ModelExecutionError, match=how):
        await double(engine, "faulty", TRIGGER)
    # This process (the server) is alive, and the other model serves.
    np.testing.assert_array_equal(await double(engine, "other"), row(4.0))
    np.testing.assert_array_equal(await serves_again(engine, "faulty"), row(4.0))


async def test_gil_spin_in_an_isolated_model_leaves_others_serving(
    tmp_path: Path, engines: EngineStarter
) -> None:
    write_faulty_model(tmp_path, "spinner", "spin", execution_timeout_s="3", **ISOLATED)
    write_python_add(tmp_path, "other")
    engine = await engines.start()
    spin = asyncio.create_task(double(engine, "spinner", TRIGGER))
    await asyncio.sleep(0.3)
    served = 0
    while not spin.done() and served < 2000:  # bounded: the deadline ends the spin
        np.testing.assert_array_equal(await double(engine, "other"), row(4.0))
        served += 1
    with pytest.raises(ExecutionTimeoutError, match="exceeded its deadline of 3 s"):
        await spin
    assert served > 10  # other requests completed while the spinner held its own GIL
    np.testing.assert_array_equal(await serves_again(engine, "spinner"), row(4.0))


async def test_crash_loop_ends_unavailable_with_the_reason(
    tmp_path: Path, engines: EngineStarter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The policy, not the waiting, is tested: short back-off, two failures in a row stop it.
    monkeypatch.setattr(isolated, "_BACKOFF_FIRST_S", 0.05)
    monkeypatch.setattr(isolated, "MAX_CONSECUTIVE_FAILURES", 2)
    write_faulty_model(tmp_path, "crashy", "exit", **ISOLATED)
    engine = await engines.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while engine.model_ready("crashy") and loop.time() < deadline:
        try:
            await double(engine, "crashy", TRIGGER)
        except ModelExecutionError:
            pass
        except UnavailableError:
            await asyncio.sleep(0.2)
    assert not engine.model_ready("crashy")
    entry = next(e for e in engine.repository_index() if e.name == "crashy")
    assert entry.state == "UNAVAILABLE"
    assert "failed 2 times in a row" in entry.reason and "exited with code 1" in entry.reason
    with pytest.raises(UnavailableError, match="reload the model"):
        await double(engine, "crashy")


BLS_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            target = "missing_model" if values.flat[0] < 0 else "python_add"
            call = pb_utils.InferenceRequest(
                model_name=target,
                requested_output_names=["OUTPUT0"],
                inputs=[pb_utils.Tensor("INPUT0", values)],
            )
            answer = call.exec()
            if answer.has_error():
                error = pb_utils.TritonError("callee failed: " + answer.error().message())
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            doubled = pb_utils.get_output_tensor_by_name(answer, "OUTPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", doubled + 1)]))
        return responses
"""


async def test_bls_from_an_isolated_model_runs_through_the_engine(
    tmp_path: Path, engines: EngineStarter
) -> None:
    write_python_add(tmp_path)
    write_python_add(tmp_path, "caller", **ISOLATED)
    (tmp_path / "caller" / "1" / "model.py").write_text(textwrap.dedent(BLS_MODEL))
    engine = await engines.start()
    np.testing.assert_array_equal(await double(engine, "caller", 3.0), row(7.0))
    with pytest.raises(ModelExecutionError, match=r"callee failed: .*missing_model"):
        await double(engine, "caller", -1.0)
    statistics = engine.model_statistics("python_add")[0]
    assert statistics.inference_count >= 1  # the BLS call was counted like a client's


async def test_unload_stops_the_workers_and_removes_shared_memory(
    tmp_path: Path, engines: EngineStarter
) -> None:
    write_python_add(tmp_path, "isolated", **ISOLATED)
    engine = await engines.start()
    await double(engine, "isolated")
    assert worker_processes.live_pids()
    await engine.repository.unload("isolated")
    assert not worker_processes.live_pids()
    import glob
    import os

    assert not glob.glob(f"/dev/shm/packserve-{os.getpid()}-*")


BYTES_ASYNC_MODEL = """\
import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    async def execute(self, requests):
        await asyncio.sleep(0)
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            upper = np.array([t.upper() for t in text.flat], dtype=np.object_).reshape(text.shape)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("UPPER", upper)]))
        return responses
"""

BYTES_CONFIG = """\
name: "shout"
backend: "python"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ -1 ] } ]
output [ { name: "UPPER" data_type: TYPE_STRING dims: [ -1 ] } ]
parameters { key: "isolation" value { string_value: "process" } }
"""


async def test_bytes_tensors_and_async_execute_cross_the_process_boundary(
    tmp_path: Path, engines: EngineStarter
) -> None:
    (tmp_path / "shout" / "1").mkdir(parents=True)
    (tmp_path / "shout" / "1" / "model.py").write_text(BYTES_ASYNC_MODEL)
    (tmp_path / "shout" / "config.pbtxt").write_text(BYTES_CONFIG)
    engine = await engines.start()
    text = np.array([b"abc", b"", "é".encode()], dtype=np.object_)
    response = await engine.infer(InferRequest("shout", {"TEXT": text}))
    assert list(response.outputs["UPPER"]) == [b"ABC", b"", "é".encode().upper()]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_server_leaves_no_worker_behind(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    write_faulty_model(repository, "hangs", "hang", **ISOLATED)
    server = start_live_server(repository, tmp_path)
    try:
        workers = _children(server.process.pid)
        assert workers, "the isolated model should have a worker process"
    finally:
        server.process.kill()  # SIGKILL: no unload, no finalize
        server.process.wait(30)
    deadline = time.monotonic() + 20
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(pid) for pid in workers)
