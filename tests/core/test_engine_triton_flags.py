"""Engine options behind tritonserver's flags: --strict-readiness, --disable-auto-complete-config,
--model-config-name, --model-load-thread-count, --id, several repositories."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from packserve.config.loader import ConfigLoadOptions
from packserve.core.engine import Engine, EngineOptions
from packserve.examples.simple_repository import build_simple_repository


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_simple_repository(tmp_path_factory.mktemp("example"))


def _repository(example: Path, root: Path, *names: str) -> Path:
    for name in names:
        shutil.copytree(example / name, root / name)
    return root


def _states(engine: Engine) -> dict[str, str]:
    return {entry.name: entry.state for entry in engine.repository_index()}


async def test_strict_readiness_waits_for_every_model(example: Path, tmp_path: Path) -> None:
    repository = _repository(example, tmp_path, "simple")
    (repository / "broken").mkdir()
    (repository / "broken" / "config.pbtxt").write_text("this is not a config")
    for strict in (False, True):
        engine = await Engine.start(EngineOptions(repository, strict_readiness=strict, server_id="twin"))
        try:
            assert _states(engine) == {"simple": "READY", "broken": "UNAVAILABLE"}
            assert engine.is_ready() is not strict
            assert engine.server_metadata().name == "twin"
        finally:
            await engine.shutdown(0)


async def test_strict_readiness_ignores_models_never_asked_for(example: Path, tmp_path: Path) -> None:
    repository = _repository(example, tmp_path, "simple", "simple_v3")
    options = EngineOptions(repository, model_control_mode="explicit", load_models=("simple",), strict_readiness=True)
    engine = await Engine.start(options)
    try:
        assert _states(engine)["simple_v3"] == "UNAVAILABLE" and engine.is_ready()
    finally:
        await engine.shutdown(0)


async def test_disabled_auto_complete_refuses_a_model_without_config(example: Path, tmp_path: Path) -> None:
    repository = _repository(example, tmp_path, "simple", "simple_v3")
    options = EngineOptions(repository, config_options=ConfigLoadOptions(auto_complete=False))
    engine = await Engine.start(options)
    try:
        assert _states(engine) == {"simple": "READY", "simple_v3": "UNAVAILABLE"}
        reason = next(e.reason for e in engine.repository_index() if e.name == "simple_v3")
        assert "auto-complete is disabled" in reason
    finally:
        await engine.shutdown(0)


async def test_partial_config_is_not_completed_when_auto_complete_is_off(example: Path, tmp_path: Path) -> None:
    repository = _repository(example, tmp_path, "simple_v3")
    (repository / "simple_v3" / "config.pbtxt").write_text('name: "simple_v3"\nplatform: "onnxruntime_onnx"\n')
    for auto_complete, state in ((True, "READY"), (False, "UNAVAILABLE")):
        options = EngineOptions(repository, config_options=ConfigLoadOptions(auto_complete=auto_complete))
        engine = await Engine.start(options)
        try:
            assert _states(engine) == {"simple_v3": state}
        finally:
            await engine.shutdown(0)


async def test_union_of_repositories_and_load_thread_limit(example: Path, tmp_path: Path) -> None:
    first = _repository(example, tmp_path / "a", "simple", "python_add")
    second = _repository(example, tmp_path / "b", "simple_v3", "python_add")
    options = EngineOptions(first, more_repositories=(second,), model_load_concurrency=1)
    engine = await Engine.start(options)
    try:
        assert _states(engine) == {"python_add": "UNAVAILABLE", "simple": "READY", "simple_v3": "READY"}
        reason = next(e.reason for e in engine.repository_index() if e.name == "python_add")
        assert str(first) in reason and str(second) in reason
        assert engine.repository.model_dir("simple_v3") == second / "simple_v3"
    finally:
        await engine.shutdown(0)
