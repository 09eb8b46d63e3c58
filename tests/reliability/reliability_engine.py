"""Helpers shared by the isolation / timeout / memory reliability tests (named apart from the
reliability suite's own conftest so both can live in this folder)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from packserve.core.engine import Engine, EngineOptions
from packserve.errors import UnavailableError
from packserve.examples.simple_repository import PYTHON_ADD_CONFIG, PYTHON_ADD_MODEL
from packserve.messages import InferRequest
from tests.reliability.faulty_models import row

# Restarts back off from 0.5 s: a test waits for a restarted worker at most this long.
RESTART_WAIT_S = 30.0


def write_python_add(root: Path, name: str = "python_add", **parameters: str) -> None:
    """Triton's python_add example under another name, with config `parameters`."""
    (root / name / "1").mkdir(parents=True)
    (root / name / "1" / "model.py").write_text(PYTHON_ADD_MODEL)
    params = "".join(
        f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n' for k, v in parameters.items()
    )
    (root / name / "config.pbtxt").write_text(PYTHON_ADD_CONFIG.replace("python_add", name) + params)


async def double(engine: Engine, model: str, value: float = 2.0) -> np.ndarray:
    response = await engine.infer(InferRequest(model, {"INPUT0": row(value)}))
    return np.asarray(response.outputs["OUTPUT0"])


async def serves_again(engine: Engine, model: str) -> np.ndarray:
    """The model's answer once its worker has restarted (bounded wait through the back-off)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESTART_WAIT_S
    while True:
        try:
            return await double(engine, model)
        except UnavailableError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


def index_entry(engine: Engine, name: str) -> tuple[str, str]:
    entry = next(e for e in engine.repository_index() if e.name == name)
    return entry.state, entry.reason


class EngineStarter:
    """Starts engines on a repository for one test and shuts them all down at its end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Engine] = []

    async def start(self, **options: Any) -> Engine:
        engine = await Engine.start(EngineOptions(model_repository=self.root, drain_timeout_s=2.0, **options))
        self.started.append(engine)
        return engine

    async def stop_all(self) -> None:
        for engine in self.started:
            await engine.shutdown(2.0)
