"""The backend contract: load a model, create instances, execute a batch, close.

Threading: `BackendModel.__init__`, `create_instance` and `close` run on a loader thread;
`BackendInstance.execute` runs on that instance's own worker thread, one batch at a time, so an
instance needs no locks of its own (instances that allow it and prove cheap run on the event-loop
thread instead, still one batch at a time). Instances of one model may execute at the same time
and share whatever the `BackendModel` holds (an ONNX Runtime session, weights).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from packserve.errors import PackserveError
from packserve.messages import InferRequest, InferResponse, Tensor
from packserve.model_spec import InstanceKind

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

    from packserve.model_spec import ModelSpec


class BlsExecutor(Protocol):
    """How a backend model calls another model of the same server (Triton's BLS): the core gives
    one to every backend at load. The request runs through the callee's own validation, batcher
    and statistics, exactly as a client's; tensors are passed by reference. Failures raise the
    callee's PackserveError."""

    def infer(self, request: InferRequest, timeout_s: float | None = None) -> InferResponse:
        """Blocking form, for an instance's worker thread (never the event-loop thread); waits
        at most `timeout_s` (then ExecutionTimeoutError) when given."""
        ...

    async def infer_async(self, request: InferRequest) -> InferResponse:
        """Awaitable form, for an event loop running on a thread other than the server's."""
        ...


@dataclass(frozen=True, slots=True)
class ModelContext:
    spec: ModelSpec
    config: ModelConfig  # the normalized protobuf config (the python backend passes it as JSON)
    repository: Path  # the model repository root
    model_dir: Path  # <repository>/<model name>
    version: int
    version_dir: Path  # <model_dir>/<version>
    bls: BlsExecutor | None = None  # calls into other models of this server (python backend BLS)

    @property
    def model_file(self) -> Path:
        return self.version_dir / self.spec.default_model_filename


@dataclass(frozen=True, slots=True)
class InstanceContext:
    name: str  # "<model>_<group index>_<instance index>", as Triton names instances
    kind: InstanceKind  # CPU or GPU (a KIND_MODEL group's instances run as CPU ones)
    device_id: int  # GPU ordinal for KIND_GPU, 0 otherwise


class ExecutionTimer(abc.ABC):
    """Marks the phase boundaries of one execution into every request's timing record."""

    @abc.abstractmethod
    def inputs_ready(self) -> None:
        """Inputs are gathered (concatenated, copied to the device): compute_input ends."""

    @abc.abstractmethod
    def infer_done(self) -> None:
        """The model ran: compute_infer ends; what follows until return is compute_output."""


# One entry per request of the batch, in order: its outputs by name (batch dimension included for
# batching models) or the error that fails that request alone.
BatchResult = list["dict[str, Tensor] | PackserveError"]


class BackendInstance(abc.ABC):
    @abc.abstractmethod
    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        """Run one batch. The core has already validated every input against the config and
        guarantees the batch fits max_batch_size. Raising fails every request of the batch;
        returning an error in a slot fails that request only."""

    @property
    def may_run_inline(self) -> bool:
        """True when `execute` does all its work on the calling thread's CPU: no I/O, sleeps,
        thread pools or device synchronisation. Then its thread CPU time is how long it blocks,
        and the core may call it on the event-loop thread once it has measured it cheaper than a
        hand-off to the worker thread (core/inline_policy.py)."""
        return False

    @property
    def failed_reason(self) -> str | None:
        """Why this instance can serve no more (its model then shows UNAVAILABLE), or None."""
        return None

    @property
    def enforces_execution_timeout(self) -> bool:
        """True when `execute` keeps the model's execution deadline itself (an isolated worker
        is killed); otherwise the instance pool fails late batches and sets the instance aside."""
        return False

    def interrupt(self) -> None:  # noqa: B027 - in-process instances cannot be stopped
        """Make a running `execute` return as soon as it can (unload under a hung model).
        Any thread may call it."""

    def cpu_cores(self, rows: int) -> int:
        """How many cores one execution of `rows` rows keeps busy at once (its threads): what it
        takes from the CPU execution-slot budget. One unless the instance computes on a pool."""
        return 1

    def close(self) -> None:  # noqa: B027 - most instances hold nothing of their own
        """Release what this instance holds."""


class BackendModel(abc.ABC):
    # File looked for in the version folder when the config names none.
    default_model_filename: ClassVar[str] = "model"

    def __init__(self, context: ModelContext) -> None:
        self.context = context

    @classmethod  # noqa: B027 - optional hook: most backends need no auto-complete
    def complete_config(cls, config: ModelConfig, version_dir: Path) -> None:
        """Fill what the config leaves out (inputs, outputs, max_batch_size) from the model file,
        as Triton's auto-complete does. Mutates `config`; raise ConfigError when it cannot."""

    @abc.abstractmethod
    def create_instance(self, instance: InstanceContext) -> BackendInstance:
        """Create one execution instance. Instances should share weights held by the model."""

    def close(self) -> None:  # noqa: B027
        """Release what the model holds, after every instance has been closed."""
