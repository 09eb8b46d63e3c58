"""Read-only answers the engine gives the front ends: metadata, index, statistics.

Front ends turn these into JSON or protobuf; they never see the core's live objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from packserve.types import DataType, WireName


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    name: str
    datatype: DataType
    shape: tuple[int, ...]  # batch dimension included as -1 for batching models, as Triton does


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str  # Triton reports the backend name here when no platform is set
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]


class ModelState(WireName):
    """A model's state in the repository index: Triton's words, sent to clients as they are."""

    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"


@dataclass(frozen=True, slots=True)
class IndexEntry:
    name: str
    version: str  # "" when no version could be read (e.g. unparsable config)
    state: ModelState
    reason: str  # why it is not ready; "" when ready


@dataclass(frozen=True, slots=True)
class DurationStat:
    count: int = 0
    ns: int = 0


@dataclass(frozen=True, slots=True)
class InferenceStats:
    success: DurationStat = field(default_factory=DurationStat)
    fail: DurationStat = field(default_factory=DurationStat)
    queue: DurationStat = field(default_factory=DurationStat)
    compute_input: DurationStat = field(default_factory=DurationStat)
    compute_infer: DurationStat = field(default_factory=DurationStat)
    compute_output: DurationStat = field(default_factory=DurationStat)
    cache_hit: DurationStat = field(default_factory=DurationStat)
    cache_miss: DurationStat = field(default_factory=DurationStat)


@dataclass(frozen=True, slots=True)
class BatchStats:
    batch_size: int
    compute_input: DurationStat
    compute_infer: DurationStat
    compute_output: DurationStat


@dataclass(frozen=True, slots=True)
class ModelStatistics:
    name: str
    version: str
    last_inference_ms: int  # wall-clock ms since the epoch of the last inference, 0 if none
    inference_count: int  # batch rows inferred (a batch-5 request counts 5), as Triton counts
    execution_count: int  # backend executions
    inference_stats: InferenceStats
    batch_stats: tuple[BatchStats, ...] = field(default_factory=tuple)
