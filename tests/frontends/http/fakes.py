"""A small in-memory engine with the `EngineApi` shape, for front-end tests.

Models:
- "simple" (version "1"): INT32 INPUT0, INPUT1 [-1, 16] -> OUTPUT0 = sum, OUTPUT1 = difference.
- "echo" (version "1"): returns every input as an output of the same name (any datatype).
- "broken": listed in the index as UNAVAILABLE; infer on it raises ModelNotReadyError.
Requests with class_count > 0 get BYTES "score:index" strings, as the real engine returns them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tritonclient.grpc.model_config_pb2 import ModelConfig

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
from packserve.errors import (
    InvalidArgumentError,
    ModelExecutionError,
    ModelLoadError,
    ModelNotReadyError,
    NotFoundError,
)
from packserve.messages import InferRequest, InferResponse
from packserve.types import DataType

SIMPLE_INPUTS = (
    TensorMetadata("INPUT0", DataType.INT32, (-1, 16)),
    TensorMetadata("INPUT1", DataType.INT32, (-1, 16)),
)
SIMPLE_OUTPUTS = (
    TensorMetadata("OUTPUT0", DataType.INT32, (-1, 16)),
    TensorMetadata("OUTPUT1", DataType.INT32, (-1, 16)),
)


class FakeEngine:
    def __init__(self) -> None:
        self.ready = True
        self.shared_memory = SharedMemoryRegistry()
        self.loaded = {"simple": True, "echo": True, "broken": False}
        self.load_calls: list[tuple[str, str | None, dict[str, bytes] | None]] = []
        self.unload_calls: list[tuple[str, bool]] = []
        self.requests: list[InferRequest] = []
        self.fail_next_with: Exception | None = None

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata("triton", "2.51.0", ("classification", "binary_tensor_data", "statistics"))

    def is_live(self) -> bool:
        return True

    def is_ready(self) -> bool:
        return self.ready

    def _check(self, name: str, version: str) -> None:
        if name not in self.loaded:
            raise NotFoundError(f"Request for unknown model: '{name}' is not found")
        if version not in ("", "1"):
            raise NotFoundError(f"Request for unknown model: '{name}' version {version} is not found")
        if not self.loaded[name]:
            raise ModelNotReadyError(f"Request for unknown model: '{name}' has no available versions")

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.loaded.get(name, False) and version in ("", "1")

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        self._check(name, version)
        if name == "simple":
            return ModelMetadata("simple", ("1",), "onnxruntime_onnx", SIMPLE_INPUTS, SIMPLE_OUTPUTS)
        return ModelMetadata(name, ("1",), "python", (), ())

    def model_config(self, name: str, version: str = "") -> ModelConfig:
        self._check(name, version)
        return ModelConfig(name=name, max_batch_size=8)

    def model_statistics(self, name: str = "", version: str = "") -> list[ModelStatistics]:
        if name:
            self._check(name, version)
        stat = ModelStatistics(
            name="simple",
            version="1",
            last_inference_ms=1700000000000,
            inference_count=5,
            execution_count=3,
            inference_stats=InferenceStats(success=DurationStat(3, 3000), queue=DurationStat(3, 300)),
            batch_stats=(BatchStats(1, DurationStat(3, 30), DurationStat(3, 2000), DurationStat(3, 40)),),
        )
        return [stat] if name in ("", "simple") else []

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        entries = [
            IndexEntry("broken", "1", "UNAVAILABLE", "load failed: bad config"),
            IndexEntry("echo", "1", "READY", ""),
            IndexEntry("simple", "1", "READY", ""),
        ]
        return [e for e in entries if e.state == "READY"] if ready_only else entries

    async def load_model(
        self, name: str, config_json: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        self.load_calls.append((name, config_json, files))
        if name == "broken":
            raise ModelLoadError("failed to load 'broken': bad config")
        self.loaded[name] = True

    async def unload_model(self, name: str, unload_dependents: bool = False) -> None:
        self.unload_calls.append((name, unload_dependents))
        if name not in self.loaded:
            raise NotFoundError(f"failed to unload '{name}', no version is available")
        self.loaded[name] = False

    async def infer(self, request: InferRequest) -> InferResponse:
        self.requests.append(request)
        if self.fail_next_with is not None:
            error, self.fail_next_with = self.fail_next_with, None
            raise error
        self._check(request.model_name, request.model_version)
        outputs = self._simple(request) if request.model_name == "simple" else dict(request.inputs)
        if request.outputs is not None:
            selected: dict[str, Any] = {}
            for wanted in request.outputs:
                if wanted.name not in outputs:
                    raise InvalidArgumentError(
                        f"unexpected inference output '{wanted.name}' for model '{request.model_name}'"
                    )
                tensor = outputs[wanted.name]
                selected[wanted.name] = (
                    _classify(tensor, wanted.class_count) if wanted.class_count else tensor
                )
            outputs = selected
        return InferResponse(request.model_name, "1", request.id, outputs)

    @staticmethod
    def _simple(request: InferRequest) -> dict[str, Any]:
        try:
            a, b = request.inputs["INPUT0"], request.inputs["INPUT1"]
        except KeyError as exc:
            raise InvalidArgumentError(f"expected input {exc} for model 'simple'") from None
        if a.dtype != np.int32 or b.dtype != np.int32:
            raise InvalidArgumentError("inputs of model 'simple' must be INT32")
        if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 16:
            raise InvalidArgumentError(
                f"unexpected shape {list(a.shape)} for model 'simple', expecting [-1,16]"
            )
        if a.shape[0] == 0:
            raise ModelExecutionError("model 'simple' cannot run an empty batch")
        return {"OUTPUT0": a + b, "OUTPUT1": a - b}

    async def shutdown(self, drain_timeout_s: float = 30.0) -> bool:
        return True


def _classify(tensor: np.ndarray, count: int) -> np.ndarray:
    rows = tensor.reshape(tensor.shape[0], -1) if tensor.ndim > 1 else tensor.reshape(1, -1)
    out = np.empty((rows.shape[0], min(count, rows.shape[1])), dtype=np.object_)
    for r, row in enumerate(rows):
        order = np.argsort(-row, kind="stable")[: out.shape[1]]
        for c, index in enumerate(order):
            out[r, c] = f"{float(row[index]):f}:{int(index)}".encode()
    return out if tensor.ndim > 1 else out.reshape(-1)
