"""Build the frozen `ModelSpec` the hot path reads from a normalized, validated ModelConfig."""

from __future__ import annotations

from pathlib import Path

from google.protobuf.message import Message
from tritonclient.grpc.model_config_pb2 import DataType as ConfigDataType
from tritonclient.grpc.model_config_pb2 import ModelConfig, ModelInstanceGroup, ModelQueuePolicy

from packserve.errors import ConfigError
from packserve.model_spec import (
    BatchingPolicy,
    EnsembleStepSpec,
    InstanceGroupSpec,
    InstanceKind,
    ModelSpec,
    QueuePolicy,
    TensorSpec,
    VersionPolicy,
)
from packserve.types import DataType


def build_model_spec(config: ModelConfig, model_dir: Path) -> ModelSpec:
    """The spec of a config that passed `validate_config`; label files are read from `model_dir`."""
    return ModelSpec(
        name=config.name,
        platform=config.platform,
        backend=config.backend,
        max_batch_size=config.max_batch_size,
        inputs=tuple(_tensor_spec(tensor, model_dir) for tensor in config.input),
        outputs=tuple(_tensor_spec(tensor, model_dir) for tensor in config.output),
        dynamic_batching=batching_policy(config) if config.HasField("dynamic_batching") else None,
        instance_groups=tuple(_instance_group_spec(group) for group in config.instance_group),
        version_policy=version_policy(config),
        default_model_filename=config.default_model_filename,
        parameters={key: value.string_value for key, value in sorted(config.parameters.items())},
        ensemble_steps=tuple(
            EnsembleStepSpec(
                model_name=step.model_name,
                model_version=step.model_version,
                input_map=dict(step.input_map),
                output_map=dict(step.output_map),
            )
            for step in config.ensemble_scheduling.step
        ),
        response_cache=config.response_cache.enable,
    )


def read_labels(path: Path) -> tuple[str, ...]:
    """One label per line; the index of a line is its class id. Trailing blank lines are dropped,
    blank lines in between keep their index."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read label file '{path}': {exc}") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    return tuple(line.strip() for line in lines)


def version_policy(config: ModelConfig) -> VersionPolicy:
    """The config's version policy; latest 1 when none is set (as normalization fills it)."""
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return VersionPolicy(kind="all")
    if which == "specific":
        return VersionPolicy(kind="specific", specific_versions=tuple(sorted(set(policy.specific.versions))))
    num_versions = policy.latest.num_versions if which == "latest" else 1
    return VersionPolicy(kind="latest", latest_num_versions=num_versions)


def batching_policy(config: ModelConfig) -> BatchingPolicy:
    batching = config.dynamic_batching
    return BatchingPolicy(
        preferred_batch_sizes=tuple(batching.preferred_batch_size),
        max_queue_delay_us=batching.max_queue_delay_microseconds,
        preserve_ordering=batching.preserve_ordering,
        priority_levels=batching.priority_levels,
        default_priority_level=batching.default_priority_level,
        default_queue_policy=_queue_policy(batching.default_queue_policy),
        priority_queue_policy={
            level: _queue_policy(policy) for level, policy in sorted(batching.priority_queue_policy.items())
        },
    )


def _queue_policy(policy: Message) -> QueuePolicy:
    return QueuePolicy(
        timeout_action=ModelQueuePolicy.TimeoutAction.Name(policy.timeout_action),
        default_timeout_us=policy.default_timeout_microseconds,
        allow_timeout_override=policy.allow_timeout_override,
        max_queue_size=policy.max_queue_size,
    )


def _tensor_spec(tensor: Message, model_dir: Path) -> TensorSpec:
    label_filename = getattr(tensor, "label_filename", "")
    return TensorSpec(
        name=tensor.name,
        datatype=DataType.from_config(ConfigDataType.Name(tensor.data_type)),
        dims=tuple(tensor.dims),
        reshape=tuple(tensor.reshape.shape) if tensor.HasField("reshape") else None,
        optional=getattr(tensor, "optional", False),
        labels=read_labels(model_dir / label_filename) if label_filename else (),
    )


def _instance_group_spec(group: Message) -> InstanceGroupSpec:
    return InstanceGroupSpec(
        name=group.name,
        count=group.count,
        kind=InstanceKind(ModelInstanceGroup.Kind.Name(group.kind)),  # validated: no KIND_AUTO left
        gpus=tuple(group.gpus),
    )
