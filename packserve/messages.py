"""Typed messages between the front ends, the core and the backends.

Ownership: a front end builds an `InferRequest`, hands it to `Engine.infer` and must not touch it
again; the core fills `timing` as the request moves (event-loop thread until the batch is handed to
an instance worker thread, that thread during execution); the `InferResponse` belongs to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# A tensor is a numpy array on the host, or a torch tensor (possibly in GPU memory) on the GPU path.
# BYTES tensors are numpy object arrays whose elements are `bytes`.
Tensor = Any


def to_host(tensor: Tensor) -> np.ndarray:
    """`tensor` as a host numpy array: numpy as is, a torch tensor (possibly in GPU memory) detached
    and copied to the host, anything else through `np.asarray`. The one conversion every layer uses;
    what cannot be converted raises (TypeError / RuntimeError / AttributeError from numpy or torch),
    and the caller decides whose error that is."""
    if isinstance(tensor, np.ndarray):
        return tensor
    if hasattr(tensor, "cpu"):  # torch, or a tensor-like with the same .cpu().numpy() pair
        if hasattr(tensor, "detach"):
            tensor = tensor.detach()
        return np.asarray(tensor.cpu().numpy())
    return np.asarray(tensor)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    # > 0: return the top `class_count` classes of this output as BYTES "score:index[:label]".
    class_count: int = 0


@dataclass(slots=True)
class RequestTiming:
    """The one timing record of a request (monotonic ns). Statistics, Prometheus metrics and the
    profiler all read it; nothing else times a request."""

    received_ns: int = 0  # Engine.infer entered
    queue_start_ns: int = 0  # joined its model's queue
    compute_start_ns: int = 0  # its batch started executing on an instance
    compute_input_end_ns: int = 0  # inputs gathered/copied for the backend
    compute_infer_end_ns: int = 0  # backend inference finished
    compute_end_ns: int = 0  # outputs split back to requests
    completed_ns: int = 0  # response (or error) handed back
    batch_size: int = 0  # batch size of the execution this request ran in
    cache_ns: int = 0  # response-cache lookup (models with response_cache enabled)

    @property
    def queue_ns(self) -> int:
        return max(0, self.compute_start_ns - self.queue_start_ns)

    @property
    def compute_input_ns(self) -> int:
        return max(0, self.compute_input_end_ns - self.compute_start_ns)

    @property
    def compute_infer_ns(self) -> int:
        return max(0, self.compute_infer_end_ns - self.compute_input_end_ns)

    @property
    def compute_output_ns(self) -> int:
        return max(0, self.compute_end_ns - self.compute_infer_end_ns)

    @property
    def total_ns(self) -> int:
        return max(0, self.completed_ns - self.received_ns)


@dataclass(slots=True)
class InferRequest:
    model_name: str
    # Inputs by name. Models with max_batch_size > 0 get the batch dimension first.
    inputs: dict[str, Tensor]
    model_version: str = ""  # "" = chosen by the model's version policy (the latest ready)
    # None = every output of the model, in config order.
    outputs: list[RequestedOutput] | None = None
    id: str = ""
    priority: int = 0  # 0 = the model's default priority level
    timeout_us: int = 0  # 0 = the model's default queue timeout
    parameters: dict[str, Any] = field(default_factory=dict)
    timing: RequestTiming = field(default_factory=RequestTiming)
    # When the outermost request was admitted (an ensemble's or region map's, for their steps);
    # 0 = this request's own received_ns. The CPU slot budget serves older requests first.
    origin_ns: int = 0

    def admitted_ns(self) -> int:
        return self.origin_ns or self.timing.received_ns

    def batch_size(self, batching: bool) -> int:
        """Rows this request adds to a batch: its first dimension for batching models, else 1."""
        if not batching or not self.inputs:
            return 1
        first = next(iter(self.inputs.values()))
        return int(first.shape[0]) if len(first.shape) else 1


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str
    # Outputs by name in the order asked for (config order when all were asked for).
    outputs: dict[str, Tensor]
    parameters: dict[str, Any] = field(default_factory=dict)
