"""Fakes for the scheduling tests: a model spec builder, a recording backend instance and a
recording observer. No real backend, no mocks."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from packserve.backends.base import BackendInstance, BatchResult, ExecutionTimer
from packserve.errors import InvalidArgumentError
from packserve.messages import InferRequest, RequestTiming
from packserve.model_spec import BatchingPolicy, InstanceGroupSpec, ModelSpec, TensorSpec, VersionPolicy
from packserve.types import DataType


def make_spec(
    name: str = "simple",
    max_batch_size: int = 8,
    dynamic_batching: BatchingPolicy | None = None,
    inputs: Sequence[TensorSpec] | None = None,
    outputs: Sequence[TensorSpec] | None = None,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        platform="",
        backend="python",
        max_batch_size=max_batch_size,
        inputs=tuple(inputs or (TensorSpec("INPUT0", DataType.FP32, (4,)),)),
        outputs=tuple(outputs or (TensorSpec("OUTPUT0", DataType.FP32, (4,)),)),
        dynamic_batching=dynamic_batching,
        instance_groups=(InstanceGroupSpec("simple", 1, "KIND_CPU"),),
        version_policy=VersionPolicy(),
        default_model_filename="model.py",
    )


def make_request(rows: int = 1, value: float = 1.0, batching: bool = True, **kwargs: object) -> InferRequest:
    shape = (rows, 4) if batching else (4,)
    data = np.full(shape, value, dtype=np.float32)
    return InferRequest(model_name="simple", inputs={"INPUT0": data}, **kwargs)  # type: ignore[arg-type]


class DoublingInstance(BackendInstance):
    """OUTPUT0 = 2 * INPUT0 per request. A request with parameter "fail" gets an error in its slot;
    one with "raise" makes the whole execution raise. `gate`, when set, holds every execution until
    released, so a test can see several instances busy at once."""

    def __init__(self, gate: threading.Event | None = None, mark_phases: bool = True) -> None:
        self.batches: list[list[InferRequest]] = []
        self.gate = gate
        self.mark_phases = mark_phases
        self.started = threading.Semaphore(0)
        self.closed = False
        self.threads: set[str] = set()

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(requests))
        self.started.release()
        if self.gate is not None:
            self.gate.wait(10)
        if self.mark_phases:
            timer.inputs_ready()
        if any("raise" in r.parameters for r in requests):
            raise RuntimeError("CUDA went away")
        results: BatchResult = []
        for request in requests:
            if "fail" in request.parameters:
                results.append(InvalidArgumentError(f"request {request.id} is bad"))
            else:
                results.append({"OUTPUT0": request.inputs["INPUT0"] * 2})
        if self.mark_phases:
            timer.infer_done()
        return results

    def close(self) -> None:
        self.closed = True


@dataclass
class RecordingObserver:
    executions: list[tuple[str, str, int]] = field(default_factory=list)
    queue_sizes: list[int] = field(default_factory=list)
    finished: list[tuple[str, str | None]] = field(default_factory=list)

    def request_finished(
        self, model: str, version: str, timing: RequestTiming, error_reason: str | None
    ) -> None:
        self.finished.append((model, error_reason))

    def execution_finished(self, model: str, version: str, batch_size: int, timing: RequestTiming) -> None:
        self.executions.append((model, version, batch_size))

    def queue_size_changed(self, model: str, version: str, pending: int) -> None:
        self.queue_sizes.append(pending)

    def model_loaded(self, model: str, version: str, seconds: float) -> None:
        pass

    def model_unloaded(self, model: str, version: str) -> None:
        pass
