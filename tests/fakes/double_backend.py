"""A fake backend for engine tests: doubles its input, fails on request, records batch sizes."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from packserve.backends.base import (
    BackendInstance,
    BackendModel,
    BatchResult,
    ExecutionTimer,
    InstanceContext,
)
from packserve.errors import InvalidArgumentError
from packserve.messages import InferRequest
from tests.fakes.registry import BackendRegistry

FAKE_BACKEND = "fake_double"


class DoubleInstance(BackendInstance):
    def __init__(self, model: DoubleModel) -> None:
        self.model = model

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        with self.model.lock:
            self.model.batch_sizes.append(sum(int(r.inputs["X"].shape[0]) for r in requests))
        if self.model.block is not None:
            self.model.block.wait(5)
        timer.inputs_ready()
        results: BatchResult = []
        for request in requests:
            x = request.inputs["X"]
            if np.any(x < 0):
                results.append(InvalidArgumentError("negative input"))
            else:
                results.append({"Y": x * 2})
        timer.infer_done()
        return results


class DoubleModel(BackendModel):
    default_model_filename = "model.txt"

    def __init__(self, context: object) -> None:
        super().__init__(context)  # type: ignore[arg-type]
        self.batch_sizes: list[int] = []
        self.lock = threading.Lock()
        self.block: threading.Event | None = None
        MODELS.append(self)

    def create_instance(self, instance: InstanceContext) -> BackendInstance:
        return DoubleInstance(self)


MODELS: list[DoubleModel] = []


def register_fake_backend(backends: BackendRegistry) -> None:
    """FAKE_BACKEND resolves to DoubleModel for this test (pass the `backend_registry` fixture)."""
    backends.add(FAKE_BACKEND, DoubleModel)


def write_double_model(root: Path, name: str, *, max_batch: int = 8, delay_us: int = 2000, count: int = 1,
                       queue_size: int = 0, versions: tuple[int, ...] = (1,)) -> None:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for version in versions:
        (folder / str(version)).mkdir(exist_ok=True)
        (folder / str(version) / "model.txt").write_text("fake")
    batching = (
        f"dynamic_batching {{ max_queue_delay_microseconds: {delay_us} "
        f"default_queue_policy {{ max_queue_size: {queue_size} }} }}"
        if max_batch
        else ""
    )
    (folder / "config.pbtxt").write_text(
        f"""
name: "{name}"
backend: "{FAKE_BACKEND}"
max_batch_size: {max_batch}
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ count: {count} kind: KIND_CPU }} ]
{batching}
"""
    )
