"""Fixtures for config tests: backends registered by name as fakes, and model folders on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from packserve.backends.base import BackendModel
from tests.fakes.config import (
    FailingCompleteModel,
    FakeBackendBase,
    FakeOnnxModel,
    FakePythonModel,
    FakeTorchModel,
    ModelFolder,
)
from tests.fakes.registry import BackendRegistry


@pytest.fixture(autouse=True)
def fake_backends(backend_registry: BackendRegistry) -> Iterator[None]:
    """Registry names resolve to fakes, so no test needs onnxruntime, torch or another part's code."""
    FakeBackendBase.seen_version_dirs.clear()
    fakes: dict[str, type[BackendModel]] = {
        "onnxruntime": FakeOnnxModel,
        "python": FakePythonModel,
        "pytorch": FakeTorchModel,
        "failing": FailingCompleteModel,
    }
    for name, cls in fakes.items():
        backend_registry.add(name, cls)
    yield


@pytest.fixture
def model_folder(tmp_path: Path) -> ModelFolder:
    """make(name, config_text=None, config_name="config.pbtxt", versions=(1,), files=("model.onnx",))"""

    def make(
        name: str = "m",
        config_text: str | None = None,
        config_name: str = "config.pbtxt",
        versions: tuple[int, ...] = (1,),
        files: tuple[str, ...] = ("model.onnx",),
    ) -> Path:
        model_dir = tmp_path / name
        model_dir.mkdir()
        if config_text is not None:
            (model_dir / config_name).write_text(config_text)
        for version in versions:
            version_dir = model_dir / str(version)
            version_dir.mkdir()
            for file_name in files:
                (version_dir / file_name).write_bytes(b"")
        return model_dir

    return make
