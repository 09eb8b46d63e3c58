"""`model_warmup`: run each configured sample on every instance before the model is READY.

Triton's semantics: a sample names its batch size, its `count` (executions, at least one) and
each input's data type, dims and data - zeros (`zero_data`), random values (`random_data`) or the
raw bytes of a file in the model's `warmup/` folder (`input_data_file`, BYTES as length-prefixed
elements). A sample that does not fit the model's config, or fails in the model, fails the load
with the reason. Warmup requests are not counted in statistics. Runs on the loader thread, after
the instances exist and before the model has a scheduler.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from packserve.backends.base import BackendInstance, ExecutionTimer
from packserve.core.clock import Clock
from packserve.core.validation import RequestValidator
from packserve.errors import ModelLoadError, PackserveError
from packserve.messages import InferRequest, RequestTiming
from packserve.model_spec import ModelSpec
from packserve.types import DataType

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig, ModelWarmup

WARMUP_FOLDER = "warmup"


class _WarmupTimer(ExecutionTimer):
    """Stamps one warmup execution's timing, reported to the statistics once the model is loaded
    (Triton counts warmup executions in the model's statistics)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        now = clock.now_ns()
        self.timing = RequestTiming(received_ns=now, queue_start_ns=now, compute_start_ns=now)

    def inputs_ready(self) -> None:
        self.timing.compute_input_end_ns = self._clock.now_ns()

    def infer_done(self) -> None:
        self.timing.compute_infer_end_ns = self._clock.now_ns()

    def done(self, rows: int) -> tuple[int, RequestTiming]:
        timing = self.timing
        timing.compute_end_ns = timing.completed_ns = self._clock.now_ns()
        timing.compute_input_end_ns = timing.compute_input_end_ns or timing.compute_start_ns
        timing.compute_infer_end_ns = timing.compute_infer_end_ns or timing.compute_input_end_ns
        timing.batch_size = rows
        return rows, timing


def run_warmup(
    spec: ModelSpec,
    config: ModelConfig,
    model_dir: Path,
    instances: Sequence[BackendInstance],
    clock: Clock,
) -> list[tuple[int, RequestTiming]]:
    """Execute every warmup sample `count` times on every instance; ModelLoadError on failure.
    Returns (rows, timing) of each execution, for the statistics."""
    records: list[tuple[int, RequestTiming]] = []
    if not config.model_warmup:
        return records
    validator = RequestValidator(spec)
    rng = np.random.default_rng(0)
    for sample in config.model_warmup:
        where = f"model '{spec.name}': failed to run warmup sample '{sample.name}'"  # Triton's words
        try:
            inputs = _sample_inputs(spec, sample, model_dir, rng)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"{where}: {exc}") from exc
        for instance in instances:
            for _ in range(max(1, sample.count)):
                request = InferRequest(spec.name, dict(inputs), id=f"warmup:{sample.name}")
                timer = _WarmupTimer(clock)
                try:
                    validator.validate(request)
                    result = instance.execute([request], timer)
                except PackserveError as exc:
                    raise ModelLoadError(f"{where}: {exc}") from exc
                except Exception as exc:  # the model itself failing, in any way
                    raise ModelLoadError(f"{where}: {type(exc).__name__}: {exc}") from exc
                if len(result) != 1 or isinstance(result[0], PackserveError):
                    reason = result[0] if result else "no response"
                    raise ModelLoadError(f"{where}: {reason}")
                records.append(timer.done(request.batch_size(spec.batching)))
    return records


def _sample_inputs(
    spec: ModelSpec, sample: ModelWarmup, model_dir: Path, rng: np.random.Generator
) -> dict[str, Any]:
    batching = spec.batching
    if batching and not 1 <= sample.batch_size <= spec.max_batch_size:
        raise ValueError(f"batch_size must be 1..{spec.max_batch_size}, got {sample.batch_size}")
    if not batching and sample.batch_size > 1:
        raise ValueError(
            f"batch_size must be 0 or 1 for a model that does not batch, got {sample.batch_size}"
        )
    if not sample.inputs:
        raise ValueError("the sample has no inputs")
    from tritonclient.grpc.model_config_pb2 import DataType as ConfigDataType

    inputs: dict[str, Any] = {}
    for name, entry in sample.inputs.items():
        datatype = DataType.from_config(ConfigDataType.Name(entry.data_type))
        dims = tuple(int(d) for d in entry.dims)
        if any(d < 0 for d in dims):
            raise ValueError(f"input '{name}': dims must be fixed, got {list(dims)}")
        one = _one_row(name, entry, datatype, dims, model_dir, rng)
        inputs[name] = np.stack([one] * sample.batch_size) if batching else one
    return inputs


def _one_row(
    name: str,
    entry: Any,
    datatype: DataType,
    dims: tuple[int, ...],
    model_dir: Path,
    rng: np.random.Generator,
) -> np.ndarray:
    count = int(np.prod(dims, dtype=np.int64))
    source = entry.WhichOneof("input_data_type")
    if source == "input_data_file":
        raw = (model_dir / WARMUP_FOLDER / entry.input_data_file).read_bytes()
        if datatype is DataType.BYTES:
            return _bytes_elements(name, raw, count).reshape(dims)
        needed = count * datatype.numpy.itemsize
        if len(raw) < needed:
            raise ValueError(
                f"input '{name}': warmup file '{entry.input_data_file}' holds {len(raw)} bytes, "
                f"{needed} needed for {datatype.wire_name} {list(dims)}"
            )
        return (
            np.frombuffer(raw[:needed], dtype=datatype.numpy.newbyteorder("<"))
            .astype(datatype.numpy)
            .reshape(dims)
        )
    if datatype is DataType.BYTES:
        # Triton sends empty strings for zero data and for random data of BYTES alike.
        return np.full(dims, b"", dtype=np.object_)
    if source == "random_data":
        if datatype is DataType.BOOL:
            return rng.integers(0, 2, size=dims).astype(np.bool_)
        if datatype.numpy.kind == "f":
            return rng.random(size=dims).astype(datatype.numpy)
        return rng.integers(0, 100, size=dims).astype(datatype.numpy)
    if source == "zero_data":
        return np.zeros(dims, dtype=datatype.numpy)
    raise ValueError(f"input '{name}' gives no data (zero_data, random_data or input_data_file)")


def _bytes_elements(name: str, raw: bytes, count: int) -> np.ndarray:
    elements = np.empty(count, dtype=np.object_)
    offset = 0
    for index in range(count):
        if offset + 4 > len(raw):
            raise ValueError(f"input '{name}': warmup file holds fewer than {count} BYTES elements")
        (length,) = struct.unpack_from("<I", raw, offset)
        elements[index] = raw[offset + 4 : offset + 4 + length]
        offset += 4 + length
    return elements
