"""Frozen, validated views of a model configuration, read on the hot path, and the platform names.

The protobuf `ModelConfig` (tritonclient's generated `model_config_pb2`) stays the canonical form
served back to clients; a `ModelSpec` is built from it once, after validation, and never changes.
A leaf module: the config layer builds specs, the backends and the core read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from packserve.types import DataType, WireName

ENSEMBLE_PLATFORM = "ensemble"
# packserve's per-region cascade model (packserve.core.region_map): run by the core, like an ensemble.
REGION_MAP_PLATFORM = "region_map"
# Models the core runs itself by calling other models: no backend, no instances, no model file.
COMPOSITE_PLATFORMS = (ENSEMBLE_PLATFORM, REGION_MAP_PLATFORM)

# Triton `platform` values -> the backend that serves them.
PLATFORMS: dict[str, str] = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "pytorch_torchscript": "pytorch",
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: DataType
    # Shape without the batch dimension; -1 is a variable dimension.
    dims: tuple[int, ...]
    # The shape the backend sees (config `reshape`), without the batch dimension; None = dims.
    reshape: tuple[int, ...] | None = None
    optional: bool = False
    # Output only: class labels read from `label_filename`, index -> label.
    labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    timeout_action: str = "REJECT"  # "REJECT" or "DELAY"
    default_timeout_us: int = 0  # 0 = no timeout
    allow_timeout_override: bool = False
    max_queue_size: int = 0  # 0 = unbounded by config (the server's global admission limit still holds)


@dataclass(frozen=True, slots=True)
class BatchingPolicy:
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    preserve_ordering: bool = False
    priority_levels: int = 0  # 0 = priorities disabled; else levels 1..priority_levels, 1 highest
    default_priority_level: int = 0
    default_queue_policy: QueuePolicy = field(default_factory=QueuePolicy)
    priority_queue_policy: Mapping[int, QueuePolicy] = field(default_factory=dict)


class InstanceKind(WireName):
    """Where an instance group's instances run: Triton's names (KIND_AUTO is resolved to one of
    these during normalize)."""

    CPU = "KIND_CPU"
    GPU = "KIND_GPU"
    MODEL = "KIND_MODEL"


@dataclass(frozen=True, slots=True)
class InstanceGroupSpec:
    name: str
    count: int
    kind: InstanceKind
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    kind: str = "latest"  # "latest" | "all" | "specific"
    latest_num_versions: int = 1
    specific_versions: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class EnsembleStepSpec:
    model_name: str
    model_version: int  # -1 = the model's version policy's latest
    # step input tensor name -> ensemble tensor name
    input_map: Mapping[str, str]
    # step output tensor name -> ensemble tensor name
    output_map: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    platform: str  # e.g. "onnxruntime_onnx", "ensemble", "" for backend-only models
    backend: str  # registry name: "onnxruntime", "python", "pytorch", "image", "" for ensembles
    max_batch_size: int  # 0 = the model does not batch; inputs carry no batch dimension
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic_batching: BatchingPolicy | None
    instance_groups: tuple[InstanceGroupSpec, ...]
    version_policy: VersionPolicy
    default_model_filename: str
    parameters: Mapping[str, str] = field(default_factory=dict)  # config `parameters`, string_value only
    ensemble_steps: tuple[EnsembleStepSpec, ...] = ()
    response_cache: bool = False  # config `response_cache { enable: true }`

    @property
    def batching(self) -> bool:
        """Requests carry a leading batch dimension (config max_batch_size > 0)."""
        return self.max_batch_size > 0

    @property
    def is_ensemble(self) -> bool:
        return self.platform == ENSEMBLE_PLATFORM

    def input(self, name: str) -> TensorSpec | None:
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        return None

    def output(self, name: str) -> TensorSpec | None:
        for tensor in self.outputs:
            if tensor.name == name:
                return tensor
        return None
