"""A small in-memory engine with the `EngineApi` shape, for front-end tests without the real core.

Models:
  simple     INT32 INPUT0/INPUT1 [-1, 16] -> OUTPUT0 = sum, OUTPUT1 = difference (batching, max 8)
  echo       any datatype INPUT [any shape] -> OUTPUT, the same tensor (no batching)
  scores     FP32 INPUT [-1, 4] -> OUTPUT = INPUT (for classification)
  broken     always fails while executing (ModelExecutionError)
  busy       always answers "queue full" (QueueFullError)
It reports to observers like the engine does: one timing record per request and execution.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2

from packserve import errors
from packserve.core.observer import InferenceObserver
from packserve.core.shared_memory import SharedMemoryRegistry
from packserve.core.views import (
    BatchStats,
    DurationStat,
    IndexEntry,
    InferenceStats,
    ModelMetadata,
    ModelStatistics,
    ServerMetadata,
    TensorMetadata,
)
from packserve.messages import InferRequest, InferResponse
from packserve.types import DataType

VERSION = "1"


@dataclass
class FakeModel:
    name: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]
    max_batch_size: int
    ready: bool = True
    successes: int = 0
    failures: int = 0
    config_override: str | None = None


def _models() -> dict[str, FakeModel]:
    int32_16 = (-1, 16)
    return {
        "simple": FakeModel(
            "simple",
            (
                TensorMetadata("INPUT0", DataType.INT32, int32_16),
                TensorMetadata("INPUT1", DataType.INT32, int32_16),
            ),
            (
                TensorMetadata("OUTPUT0", DataType.INT32, int32_16),
                TensorMetadata("OUTPUT1", DataType.INT32, int32_16),
            ),
            max_batch_size=8,
        ),
        "echo": FakeModel(
            "echo",
            (TensorMetadata("INPUT", DataType.BYTES, (-1,)),),
            (TensorMetadata("OUTPUT", DataType.BYTES, (-1,)),),
            max_batch_size=0,
        ),
        "scores": FakeModel(
            "scores",
            (TensorMetadata("INPUT", DataType.FP32, (-1, 4)),),
            (TensorMetadata("OUTPUT", DataType.FP32, (-1, 4)),),
            max_batch_size=8,
        ),
        "broken": FakeModel("broken", (), (), max_batch_size=0),
        "busy": FakeModel("busy", (), (), max_batch_size=0),
    }


class FakeEngine:
    def __init__(self) -> None:
        self.models = _models()
        self.shared_memory = SharedMemoryRegistry()
        self.observers: list[InferenceObserver] = []
        self.last_request: InferRequest | None = None
        self.unload_calls: list[tuple[str, bool]] = []
        self.load_calls: list[tuple[str, str | None, dict[str, bytes] | None]] = []
        self.ready = True
        self.delay_s = 0.0  # per request, to make concurrent requests overlap

    # --- metadata -----------------------------------------------------------------------------

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata("packserve", "0.1.0", ("classification", "model_repository", "statistics"))

    def is_live(self) -> bool:
        return True

    def is_ready(self) -> bool:
        return self.ready

    def model_ready(self, name: str, version: str = "") -> bool:
        model = self.models.get(name)
        return model is not None and model.ready and version in ("", VERSION)

    def _model(self, name: str, version: str = "") -> FakeModel:
        model = self.models.get(name)
        if model is None or version not in ("", VERSION):
            raise errors.NotFoundError(f"unknown model '{name}' version '{version}'")
        if not model.ready:
            raise errors.ModelNotReadyError(f"model '{name}' is not ready")
        return model

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self._model(name, version)
        return ModelMetadata(model.name, (VERSION,), "onnxruntime_onnx", model.inputs, model.outputs)

    def model_config(self, name: str, version: str = "") -> model_config_pb2.ModelConfig:
        model = self._model(name, version)
        config = model_config_pb2.ModelConfig(name=model.name, max_batch_size=model.max_batch_size)
        config.platform = "onnxruntime_onnx"
        for tensor in model.inputs:
            config.input.add(name=tensor.name, data_type=tensor.datatype.config_name, dims=tensor.shape[1:])
        for tensor in model.outputs:
            config.output.add(name=tensor.name, data_type=tensor.datatype.config_name, dims=tensor.shape[1:])
        return config

    def model_statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        chosen = [self._model(name, version)] if name else [m for m in self.models.values() if m.ready]
        return [
            ModelStatistics(
                name=m.name,
                version=VERSION,
                last_inference_ms=1_700_000_000_000 if m.successes else 0,
                inference_count=m.successes,
                execution_count=m.successes,
                inference_stats=InferenceStats(
                    success=DurationStat(m.successes, 1000 * m.successes),
                    fail=DurationStat(m.failures, 10 * m.failures),
                    queue=DurationStat(m.successes, 100 * m.successes),
                ),
                batch_stats=(
                    BatchStats(
                        1,
                        DurationStat(m.successes, 5),
                        DurationStat(m.successes, 6),
                        DurationStat(m.successes, 7),
                    ),
                )
                if m.successes
                else (),
            )
            for m in chosen
        ]

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        return [
            IndexEntry(m.name, VERSION, "READY" if m.ready else "UNAVAILABLE", "" if m.ready else "unloaded")
            for m in self.models.values()
            if m.ready or not ready_only
        ]

    # --- lifecycle ------------------------------------------------------------------------------

    async def load_model(
        self, name: str, config_json: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        self.load_calls.append((name, config_json, files))
        model = self.models.get(name)
        if model is None:
            raise errors.ModelLoadError(f"failed to load '{name}': no such model in the repository")
        if config_json is not None:
            try:
                json.loads(config_json)
            except ValueError as error:
                raise errors.ConfigError(f"failed to load '{name}': config override is not JSON") from error
        model.config_override = config_json
        model.ready = True
        for observer in self.observers:
            observer.model_loaded(name, VERSION, 0.25)

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        self.unload_calls.append((name, unload_dependents))
        if name not in self.models:
            raise errors.NotFoundError(f"unknown model '{name}'")
        self.models[name].ready = False
        for observer in self.observers:
            observer.model_unloaded(name, VERSION)

    async def shutdown(self, drain_timeout_s: float = 30.0) -> bool:
        self.ready = False
        return True

    # --- inference ------------------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        self.last_request = request
        timing = request.timing
        timing.received_ns = timing.queue_start_ns = time.monotonic_ns()
        try:
            model = self._model(request.model_name, request.model_version)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            timing.compute_start_ns = time.monotonic_ns()
            outputs = self._run(model, request)
            timing.compute_input_end_ns = timing.compute_infer_end_ns = timing.compute_end_ns = (
                time.monotonic_ns()
            )
        except errors.PackserveError as error:
            if request.model_name in self.models:
                self.models[request.model_name].failures += 1
            timing.completed_ns = time.monotonic_ns()
            for observer in self.observers:
                observer.request_finished(request.model_name, VERSION, timing, error.reason)
            raise
        model.successes += 1
        timing.completed_ns = time.monotonic_ns()
        rows = request.batch_size(model.max_batch_size > 0)
        timing.batch_size = rows
        for observer in self.observers:
            observer.execution_finished(model.name, VERSION, rows, timing)
            observer.request_finished(model.name, VERSION, timing, None)
        return InferResponse(model.name, VERSION, request.id, outputs, {"fake_rows": rows})

    def _run(self, model: FakeModel, request: InferRequest) -> dict[str, Any]:
        if model.name == "broken":
            raise errors.ModelExecutionError("model 'broken' failed: division by zero")
        if model.name == "busy":
            raise errors.QueueFullError("model 'busy': queue is full (max_queue_size 0)")
        for tensor in model.inputs:
            if tensor.name not in request.inputs:
                raise errors.InvalidArgumentError(f"model '{model.name}': missing input '{tensor.name}'")
        if model.name == "simple":
            a, b = request.inputs["INPUT0"], request.inputs["INPUT1"]
            if a.dtype != np.int32 or b.dtype != np.int32:
                raise errors.InvalidArgumentError(f"model 'simple': inputs must be INT32, got {a.dtype}")
            produced = {"OUTPUT0": a + b, "OUTPUT1": a - b}
        else:
            produced = {"OUTPUT": request.inputs["INPUT"]}
        if request.outputs is None:
            return produced
        chosen: dict[str, Any] = {}
        for wanted in request.outputs:
            if wanted.name not in produced:
                raise errors.InvalidArgumentError(f"model '{model.name}': unknown output '{wanted.name}'")
            value = produced[wanted.name]
            chosen[wanted.name] = _classify(value, wanted.class_count) if wanted.class_count else value
        return chosen


def _classify(scores: np.ndarray, count: int) -> np.ndarray:
    """Top `count` per row as BYTES "score:index", the form the engine's classification returns."""
    rows = scores.reshape(scores.shape[0], -1)
    top = np.argsort(-rows, axis=1, kind="stable")[:, :count]
    labels = [[f"{rows[r, i]:f}:{i}".encode() for i in top[r]] for r in range(rows.shape[0])]
    out = np.empty((rows.shape[0], top.shape[1]), dtype=np.object_)
    out[:] = labels
    return out
