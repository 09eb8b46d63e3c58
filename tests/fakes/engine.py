"""A small in-memory engine with the `EngineApi` shape, behind the HTTP and the gRPC front-end tests.

Models (version "1" each):
  simple   INT32 INPUT0, INPUT1 [-1, 16] -> OUTPUT0 = sum, OUTPUT1 = difference (batching, max 8)
  echo     every input comes back as the output of the same name (any datatype, no batching)
  scores   FP32 INPUT [-1, 4] -> OUTPUT, the same tensor (batching: for classification)
  failing  loaded, but every execution fails (ModelExecutionError)
  busy     loaded, but every request is refused with "queue is full" (QueueFullError)
  broken   failed to load: UNAVAILABLE in the index, not ready, a load attempt fails again
Classification is the engine's own code (`packserve.core.classification.classify`); statistics
count what the fake ran, with distinct numbers per field so a front end cannot swap two unseen.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2

from packserve import errors
from packserve.core.classification import classify
from packserve.core.shared_memory import SharedMemoryRegistry
from packserve.core.views import (
    BatchStats,
    DurationStat,
    IndexEntry,
    InferenceStats,
    ModelMetadata,
    ModelState,
    ModelStatistics,
    ServerMetadata,
    TensorMetadata,
)
from packserve.messages import InferRequest, InferResponse
from packserve.types import DataType

VERSION = "1"
LAST_INFERENCE_MS = 1_700_000_000_000


@dataclass
class FakeModel:
    name: str
    inputs: tuple[TensorMetadata, ...] = ()
    outputs: tuple[TensorMetadata, ...] = ()
    max_batch_size: int = 0
    platform: str = "onnxruntime_onnx"
    ready: bool = True
    reason: str = ""  # why it is UNAVAILABLE
    load_error: str = ""  # a load attempt fails with this
    config_override: str | None = None
    executions: Counter[int] = field(default_factory=Counter)  # batch rows -> successful executions
    failures: int = 0


def _models() -> dict[str, FakeModel]:
    rows_16 = (-1, 16)
    rows_4 = (-1, 4)
    return {
        "simple": FakeModel(
            "simple",
            (TensorMetadata("INPUT0", DataType.INT32, rows_16), TensorMetadata("INPUT1", DataType.INT32, rows_16)),
            (
                TensorMetadata("OUTPUT0", DataType.INT32, rows_16),
                TensorMetadata("OUTPUT1", DataType.INT32, rows_16),
            ),
            max_batch_size=8,
        ),
        "echo": FakeModel("echo", platform="python"),
        "scores": FakeModel(
            "scores",
            (TensorMetadata("INPUT", DataType.FP32, rows_4),),
            (TensorMetadata("OUTPUT", DataType.FP32, rows_4),),
            max_batch_size=8,
        ),
        "failing": FakeModel("failing"),
        "busy": FakeModel("busy"),
        "broken": FakeModel(
            "broken", ready=False, reason="load failed: bad config", load_error="bad config"
        ),
    }


class FakeEngine:
    def __init__(self) -> None:
        self.models = _models()
        self.shared_memory = SharedMemoryRegistry()
        self.requests: list[InferRequest] = []  # every request `infer` was given, in order
        self.load_calls: list[tuple[str, str | None, dict[str, bytes] | None]] = []
        self.unload_calls: list[tuple[str, bool]] = []
        self.ready = True
        self.fail_next_with: Exception | None = None  # raised by the next `infer`, whatever it asks
        self.delay_s = 0.0  # per request, to make concurrent requests overlap
        # "" holds the global trace settings; a model's own override them, as in Triton.
        self.trace_settings: dict[str, dict[str, Any]] = {"": {"trace_level": ["OFF"], "trace_rate": "1000"}}

    @property
    def last_request(self) -> InferRequest | None:
        return self.requests[-1] if self.requests else None

    # --- metadata -----------------------------------------------------------------------------

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(
            "packserve", "0.1.0", ("classification", "binary_tensor_data", "model_repository", "statistics")
        )

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
            raise errors.ModelNotReadyError(f"model '{name}' is not ready: {model.reason}")
        return model

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        model = self._model(name, version)
        return ModelMetadata(model.name, (VERSION,), model.platform, model.inputs, model.outputs)

    def model_config(self, name: str, version: str = "") -> model_config_pb2.ModelConfig:
        model = self._model(name, version)
        config = model_config_pb2.ModelConfig(name=model.name, max_batch_size=model.max_batch_size)
        config.platform = model.platform
        for tensor in model.inputs:
            config.input.add(name=tensor.name, data_type=tensor.datatype.config_name, dims=tensor.shape[1:])
        for tensor in model.outputs:
            config.output.add(name=tensor.name, data_type=tensor.datatype.config_name, dims=tensor.shape[1:])
        return config

    def model_statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        chosen = [self._model(name, version)] if name else [m for m in self.models.values() if m.ready]
        return [_statistics(m) for m in chosen]

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        return [
            IndexEntry(m.name, VERSION, ModelState.READY if m.ready else ModelState.UNAVAILABLE, m.reason)
            for m in sorted(self.models.values(), key=lambda m: m.name)
            if m.ready or not ready_only
        ]

    def trace_setting(self, model: str = "") -> dict[str, Any]:
        return dict(self.trace_settings.get(model) or self.trace_settings[""])

    def update_trace_setting(self, model: str, changes: dict[str, Any]) -> dict[str, Any]:
        self.trace_settings[model] = {**self.trace_setting(model), **changes}
        return self.trace_setting(model)

    # --- lifecycle ------------------------------------------------------------------------------

    async def load_model(
        self, name: str, config_json: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        self.load_calls.append((name, config_json, files))
        model = self.models.get(name)
        if model is None:
            raise errors.ModelLoadError(f"failed to load '{name}': no such model in the repository")
        if model.load_error:
            raise errors.ModelLoadError(f"failed to load '{name}': {model.load_error}")
        if config_json is not None:
            try:
                json.loads(config_json)
            except ValueError as error:
                raise errors.ConfigError(f"failed to load '{name}': config override is not JSON") from error
        model.config_override = config_json
        model.ready, model.reason = True, ""

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        self.unload_calls.append((name, unload_dependents))
        if name not in self.models:
            raise errors.NotFoundError(f"unknown model '{name}'")
        model = self.models[name]
        model.ready, model.reason = False, "unloaded"

    async def shutdown(self, drain_timeout_s: float = 30.0) -> bool:
        self.ready = False
        return True

    # --- inference ------------------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        self.requests.append(request)
        if self.fail_next_with is not None:
            error, self.fail_next_with = self.fail_next_with, None
            raise error
        model = self._model(request.model_name, request.model_version)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        try:
            outputs = self._run(model, request)
        except errors.PackserveError:
            model.failures += 1
            raise
        model.executions[request.batch_size(model.max_batch_size > 0)] += 1
        return InferResponse(model.name, VERSION, request.id, outputs)

    def _run(self, model: FakeModel, request: InferRequest) -> dict[str, Any]:
        if model.name == "failing":
            raise errors.ModelExecutionError("model 'failing' failed: division by zero")
        if model.name == "busy":
            raise errors.QueueFullError("model 'busy': queue is full (max_queue_size 0)")
        for tensor in model.inputs:
            if tensor.name not in request.inputs:
                raise errors.InvalidArgumentError(f"model '{model.name}': missing input '{tensor.name}'")
        if model.name == "simple":
            produced = _simple(request.inputs["INPUT0"], request.inputs["INPUT1"])
        elif model.name == "scores":
            produced = {"OUTPUT": request.inputs["INPUT"]}
        else:
            produced = dict(request.inputs)
        if request.outputs is None:
            return produced
        chosen: dict[str, Any] = {}
        for wanted in request.outputs:
            if wanted.name not in produced:
                raise errors.InvalidArgumentError(f"model '{model.name}': unknown output '{wanted.name}'")
            value = produced[wanted.name]
            if wanted.class_count:
                value = classify(value, wanted.class_count, (), batching=model.max_batch_size > 0)
            chosen[wanted.name] = value
        return chosen


def _simple(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    if a.dtype != np.int32 or b.dtype != np.int32:
        raise errors.InvalidArgumentError(f"model 'simple': inputs must be INT32, got {a.dtype}")
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 16:
        raise errors.InvalidArgumentError(f"model 'simple': unexpected shape {list(a.shape)}, expecting [-1,16]")
    if a.shape[0] == 0:
        raise errors.ModelExecutionError("model 'simple' cannot run an empty batch")
    return {"OUTPUT0": a + b, "OUTPUT1": a - b}


def _statistics(model: FakeModel) -> ModelStatistics:
    """Per execution: 1000 ns success, 100 ns queue, 5/6/7 ns compute input/infer/output; 10 ns
    per failure. inference_count counts rows, execution_count executions."""
    runs = sum(model.executions.values())
    return ModelStatistics(
        name=model.name,
        version=VERSION,
        last_inference_ms=LAST_INFERENCE_MS if runs else 0,
        inference_count=sum(rows * n for rows, n in model.executions.items()),
        execution_count=runs,
        inference_stats=InferenceStats(
            success=DurationStat(runs, 1000 * runs),
            fail=DurationStat(model.failures, 10 * model.failures),
            queue=DurationStat(runs, 100 * runs),
        ),
        batch_stats=tuple(
            BatchStats(rows, DurationStat(n, 5 * n), DurationStat(n, 6 * n), DurationStat(n, 7 * n))
            for rows, n in sorted(model.executions.items())
        ),
    )
