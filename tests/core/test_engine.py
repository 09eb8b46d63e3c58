"""The engine end to end over a fake backend: loading, broken models, inference, ensembles."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from packserve.core.engine import Engine, EngineOptions
from packserve.errors import (
    InvalidArgumentError,
    ModelNotReadyError,
    NotFoundError,
    QueueFullError,
    UnavailableError,
)
from packserve.messages import InferRequest, RequestedOutput
from tests.fakes.double_backend import MODELS, register_fake_backend, write_double_model
from tests.fakes.registry import BackendRegistry


@pytest.fixture(autouse=True)
def _fake_backend(backend_registry: BackendRegistry) -> None:
    register_fake_backend(backend_registry)


def x(rows: int, value: float = 1.0) -> np.ndarray:
    return np.full((rows, 4), value, dtype=np.float32)


async def start(root: Path, mode: str = "none", load: tuple[str, ...] = ()) -> Engine:
    return await Engine.start(EngineOptions(model_repository=root, model_control_mode=mode, load_models=load))


async def test_infer_and_metadata(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double")
    engine = await start(tmp_path)
    try:
        response = await engine.infer(InferRequest("double", {"X": x(2, 3.0)}))
        assert response.model_version == "1"
        np.testing.assert_array_equal(response.outputs["Y"], x(2, 6.0))
        meta = engine.model_metadata("double")
        assert meta.versions == ("1",)
        assert meta.inputs[0].shape == (-1, 4)
        assert engine.model_ready("double") and not engine.model_ready("nope")
        assert engine.model_config("double").max_batch_size == 8
    finally:
        await engine.shutdown()


async def test_broken_models_do_not_stop_the_good_ones(tmp_path: Path) -> None:
    write_double_model(tmp_path, "good")
    (tmp_path / "unparsable").mkdir()
    (tmp_path / "unparsable" / "config.pbtxt").write_text("name: 'unparsable' max_batch_size: [[[")
    write_double_model(tmp_path, "missing_file")
    (tmp_path / "missing_file" / "1" / "model.txt").unlink()
    (tmp_path / "missing_file" / "1").rmdir()
    engine = await start(tmp_path)
    try:
        index = {e.name: e for e in engine.repository_index()}
        assert index["good"].state == "READY"
        assert index["unparsable"].state == "UNAVAILABLE" and index["unparsable"].reason
        assert index["missing_file"].state == "UNAVAILABLE" and index["missing_file"].reason
        with pytest.raises(ModelNotReadyError):
            await engine.infer(InferRequest("unparsable", {"X": x(1)}))
        await engine.infer(InferRequest("good", {"X": x(1)}))
    finally:
        await engine.shutdown()


async def test_unknown_model_and_bad_input(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double")
    engine = await start(tmp_path)
    try:
        with pytest.raises(NotFoundError, match="unknown model"):
            await engine.infer(InferRequest("nope", {"X": x(1)}))
        with pytest.raises(InvalidArgumentError, match="X"):
            await engine.infer(InferRequest("double", {"X": np.zeros((1, 5), np.float32)}))
        with pytest.raises(InvalidArgumentError):
            await engine.infer(InferRequest("double", {"X": x(9)}))  # over max_batch_size
        # A request that fails inside the backend fails alone; its batch mates succeed.
        results = await asyncio.gather(
            engine.infer(InferRequest("double", {"X": x(1, -1.0)})),
            engine.infer(InferRequest("double", {"X": x(1, 2.0)})),
            return_exceptions=True,
        )
        assert isinstance(results[0], InvalidArgumentError)
        assert not isinstance(results[1], BaseException)
        stats = engine.model_statistics("double")[0]
        assert stats.inference_stats.fail.count == 3  # two rejected by validation, one by the model
        assert stats.inference_stats.success.count == 1
    finally:
        await engine.shutdown()


async def test_concurrent_requests_are_batched(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double", delay_us=20000, count=2)
    engine = await start(tmp_path)
    try:
        responses = await asyncio.gather(
            *(engine.infer(InferRequest("double", {"X": x(1, float(i))})) for i in range(64))
        )
        for i, response in enumerate(responses):
            np.testing.assert_array_equal(response.outputs["Y"], x(1, 2.0 * i))
        stats = engine.model_statistics("double")[0]
        assert stats.inference_count == 64
        assert stats.execution_count < 64
    finally:
        await engine.shutdown()


async def test_queue_full_is_immediate(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double", max_batch=1, delay_us=0, queue_size=2)
    engine = await start(tmp_path)
    import threading

    gate = threading.Event()
    MODELS[-1].block = gate
    try:
        tasks = [asyncio.ensure_future(engine.infer(InferRequest("double", {"X": x(1)}))) for _ in range(8)]
        await asyncio.sleep(0.2)
        rejected = [t for t in tasks if t.done() and isinstance(t.exception(), QueueFullError)]
        assert rejected, "a full queue must refuse at once"
        gate.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        gate.set()
        await engine.shutdown()


async def test_poll_loads_new_models_reloads_changed_ones_and_unloads_removed_ones(tmp_path: Path) -> None:
    for name in ("kept", "changed", "removed"):
        write_double_model(tmp_path, name)
    engine = await start(tmp_path, "poll")  # the poll task waits 15 s: the test polls itself
    try:
        write_double_model(tmp_path, "added")
        shutil.rmtree(tmp_path / "removed")
        later = time.time() + 60  # past any file time the load recorded, whatever the clock's step
        os.utime(tmp_path / "changed" / "config.pbtxt", (later, later))
        loads = len(MODELS)
        await engine.repository.poll()
        assert len(MODELS) == loads + 2  # "added" loaded, "changed" reloaded, "kept" untouched
        states = {e.name: (e.state, e.reason) for e in engine.repository_index()}
        assert states == {
            "added": ("READY", ""),
            "changed": ("READY", ""),
            "kept": ("READY", ""),
            "removed": ("UNAVAILABLE", "unloaded"),
        }
        await engine.repository.poll()
        assert len(MODELS) == loads + 2  # nothing changed since: nothing reloaded
    finally:
        await engine.shutdown()


async def test_explicit_mode_load_unload_and_override(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double")
    write_double_model(tmp_path, "other")
    engine = await start(tmp_path, "explicit", ("double",))
    try:
        assert engine.model_ready("double") and not engine.model_ready("other")
        await engine.load_model("other")
        assert engine.model_ready("other")
        await engine.unload_model("other")
        assert not engine.model_ready("other")
        override = '{"max_batch_size": 4, "backend": "fake_double", "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [4]}], "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [4]}]}'
        await engine.load_model("other", config_json=override)
        assert engine.model_config("other").max_batch_size == 4
        with pytest.raises(NotFoundError):
            await engine.load_model("never_there")
    finally:
        await engine.shutdown()


async def test_none_mode_refuses_load(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double")
    engine = await start(tmp_path)
    try:
        with pytest.raises(UnavailableError):
            await engine.unload_model("double")
    finally:
        await engine.shutdown()


async def test_versions(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double", versions=(1, 3))
    engine = await start(tmp_path)
    try:
        # The default version policy serves the latest only.
        assert engine.model_metadata("double").versions == ("3",)
        response = await engine.infer(InferRequest("double", {"X": x(1)}, model_version="3"))
        assert response.model_version == "3"
        with pytest.raises(NotFoundError):
            await engine.infer(InferRequest("double", {"X": x(1)}, model_version="1"))
    finally:
        await engine.shutdown()


ENSEMBLE = """
name: "{name}"
platform: "ensemble"
max_batch_size: 8
input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "TWICE" data_type: TYPE_FP32 dims: [ 4 ] }}, {{ name: "FOUR" data_type: TYPE_FP32 dims: [ 4 ] }},
         {{ name: "ALSO_TWICE" data_type: TYPE_FP32 dims: [ 4 ] }} ]
ensemble_scheduling {{ step [
  {{ model_name: "double" model_version: -1 input_map {{ key: "X" value: "IN" }} output_map {{ key: "Y" value: "TWICE" }} }},
  {{ model_name: "double" model_version: -1 input_map {{ key: "X" value: "TWICE" }} output_map {{ key: "Y" value: "FOUR" }} }},
  {{ model_name: "other" model_version: -1 input_map {{ key: "X" value: "IN" }} output_map {{ key: "Y" value: "ALSO_TWICE" }} }}
] }}
"""


def write_ensemble(root: Path, name: str = "pipe") -> None:
    (root / name / "1").mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(ENSEMBLE.format(name=name))


async def test_ensemble_fan_out_chain_and_partial_outputs(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double", delay_us=10000)
    write_double_model(tmp_path, "other")
    write_ensemble(tmp_path)
    engine = await start(tmp_path)
    try:
        assert engine.model_ready("pipe"), engine.repository_index()
        response = await engine.infer(InferRequest("pipe", {"IN": x(2, 1.0)}))
        np.testing.assert_array_equal(response.outputs["FOUR"], x(2, 4.0))
        np.testing.assert_array_equal(response.outputs["ALSO_TWICE"], x(2, 2.0))
        before = engine.model_statistics("other")[0].inference_count
        partial = await engine.infer(InferRequest("pipe", {"IN": x(1)}, outputs=[RequestedOutput("TWICE")]))
        assert list(partial.outputs) == ["TWICE"]
        # The branch nobody asked for did not run.
        assert engine.model_statistics("other")[0].inference_count == before
        # Concurrent ensemble requests are batched by the step model's batcher.
        await asyncio.gather(*(engine.infer(InferRequest("pipe", {"IN": x(1)})) for _ in range(16)))
        stats = engine.model_statistics("double")[0]
        assert stats.execution_count < stats.inference_count
        # One failing step fails that request only.
        with pytest.raises(InvalidArgumentError, match="ensemble 'pipe'"):
            await engine.infer(InferRequest("pipe", {"IN": x(1, -1.0)}))
        await engine.infer(InferRequest("pipe", {"IN": x(1)}))
    finally:
        await engine.shutdown()


async def test_ensemble_with_unknown_step_is_unavailable(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double")
    write_ensemble(tmp_path)  # its step model "other" does not exist
    engine = await start(tmp_path)
    try:
        index = {e.name: e for e in engine.repository_index()}
        assert index["pipe"].state == "UNAVAILABLE"
        assert "other" in index["pipe"].reason
        assert index["double"].state == "READY"
    finally:
        await engine.shutdown()
