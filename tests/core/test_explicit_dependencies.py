"""Explicit mode as Triton 2.51 does it: loading a composite model loads what it calls, unloading
a model takes down the composites calling it, `unload_dependents` unloads an ensemble's steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from packserve.backends.registry import load_backend
from packserve.config.loader import load_model_config
from packserve.core.engine import Engine, EngineOptions
from packserve.core.model_entry import spec_callees
from packserve.messages import InferRequest
from tests.core.test_engine import write_ensemble
from tests.fakes.double_backend import register_fake_backend, write_double_model
from tests.fakes.registry import BackendRegistry


@pytest.fixture(autouse=True)
def _fake_backend(backend_registry: BackendRegistry) -> None:
    register_fake_backend(backend_registry)


def states(engine: Engine) -> dict[str, str]:
    return {e.name: e.state for e in engine.repository_index()}


def test_a_parameter_named_model_is_not_a_callee(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double")
    config = tmp_path / "double" / "config.pbtxt"
    config.write_text(
        config.read_text() + 'parameters { key: "model" value: { string_value: "resnet50" } }\n'
    )
    assert spec_callees(load_model_config(tmp_path / "double", None, backends=load_backend).spec) == set()


async def test_a_model_with_a_model_parameter_loads_alone_and_unloads_nothing(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double")
    write_double_model(tmp_path, "resnet50")
    config = tmp_path / "double" / "config.pbtxt"
    config.write_text(
        config.read_text() + 'parameters { key: "model" value: { string_value: "resnet50" } }\n'
    )
    engine = await Engine.start(EngineOptions(tmp_path, "explicit", ("double", "resnet50")))
    try:
        await engine.unload_model("resnet50")
        assert states(engine)["double"] == "READY"
    finally:
        await engine.shutdown()


async def test_loading_an_ensemble_loads_its_steps_and_unload_follows_triton(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double")
    write_double_model(tmp_path, "other")
    write_ensemble(tmp_path)
    engine = await Engine.start(EngineOptions(tmp_path, "explicit", ()))
    try:
        await engine.load_model("pipe")
        assert states(engine) == {"double": "READY", "other": "READY", "pipe": "READY"}
        response = await engine.infer(InferRequest("pipe", {"IN": np.ones((1, 4), np.float32)}))
        np.testing.assert_array_equal(response.outputs["FOUR"], np.full((1, 4), 4.0, np.float32))
        # Unloading the ensemble alone keeps its steps.
        await engine.unload_model("pipe")
        assert states(engine) == {"double": "READY", "other": "READY", "pipe": "UNAVAILABLE"}
        # With unload_dependents its steps go too.
        await engine.load_model("pipe")
        await engine.unload_model("pipe", unload_dependents=True)
        assert set(states(engine).values()) == {"UNAVAILABLE"}
        # Unloading a step takes the ensemble down; loading the step brings it back.
        await engine.load_model("pipe")
        await engine.unload_model("other")
        assert states(engine)["pipe"] == "UNAVAILABLE"
        assert "'other' was unloaded" in {e.name: e for e in engine.repository_index()}["pipe"].reason
        await engine.load_model("other")
        assert states(engine)["pipe"] == "READY"
        # With two steps down, the ensemble comes back only when both are loaded again.
        await engine.unload_model("double")
        await engine.unload_model("other")
        await engine.load_model("double")
        assert states(engine)["pipe"] == "UNAVAILABLE"
        await engine.load_model("other")
        assert states(engine)["pipe"] == "READY"
        # unload_dependents leaves the steps someone loaded by name (both, just above).
        await engine.unload_model("pipe", unload_dependents=True)
        assert states(engine) == {"double": "READY", "other": "READY", "pipe": "UNAVAILABLE"}
    finally:
        await engine.shutdown()


async def test_unload_dependents_keeps_steps_another_ensemble_calls(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double")
    write_double_model(tmp_path, "other")
    write_ensemble(tmp_path, "pipe")
    write_ensemble(tmp_path, "pipe2")
    engine = await Engine.start(EngineOptions(tmp_path, "explicit", ("pipe", "pipe2")))
    try:
        assert engine.model_ready("pipe") and engine.model_ready("pipe2")
        await engine.unload_model("pipe", unload_dependents=True)
        assert states(engine) == {
            "double": "READY",
            "other": "READY",
            "pipe": "UNAVAILABLE",
            "pipe2": "READY",
        }
    finally:
        await engine.shutdown()
