"""Check a normalized model config; every problem is a ConfigError naming model, tensor and value.

The checks mirror Triton's model-config validation and add what packserve cannot serve (sequence
batching, decoupled models, batch inputs). Graph checks of an ensemble against the models it calls
live in `ensemble_graph`, because they need those models' specs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from google.protobuf.message import Message
from tritonclient.grpc.model_config_pb2 import DataType as ConfigDataType
from tritonclient.grpc.model_config_pb2 import ModelConfig, ModelInstanceGroup, ModelQueuePolicy

from packserve.config.devices import visible_gpus
from packserve.config.field_policy import check_field_policy
from packserve.errors import ConfigError
from packserve.model_spec import COMPOSITE_PLATFORMS, ENSEMBLE_PLATFORM
from packserve.types import DataType

WILDCARD_DIM = -1


def validate_config(
    config: ModelConfig, model_dir: Path, available_gpus: Sequence[int] | None = None
) -> None:
    """Raise ConfigError for the first problem found in a normalized config."""
    gpus = tuple(visible_gpus() if available_gpus is None else available_gpus)
    validate_identity(config)
    validate_supported_features(config)
    check_field_policy(config)
    validate_tensors(config)
    validate_dynamic_batching(config)
    validate_instance_groups(config, gpus)
    validate_version_policy(config)
    validate_labels(config, model_dir)
    validate_ensemble_scheduling(config)


def validate_identity(config: ModelConfig) -> None:
    if not config.name:
        raise ConfigError("model configuration must specify 'name'")
    if not config.platform and not config.backend:
        raise ConfigError(f"model '{config.name}' must specify 'platform' or 'backend'")
    if config.platform in COMPOSITE_PLATFORMS and config.backend:
        raise ConfigError(
            f"{config.platform} model '{config.name}' must not set a backend, got '{config.backend}'"
        )
    if config.max_batch_size < 0:
        raise ConfigError(
            f"model '{config.name}': 'max_batch_size' must be >= 0, got {config.max_batch_size}"
        )


def validate_supported_features(config: ModelConfig) -> None:
    """Reject configs asking for Triton features packserve does not implement, rather than
    serving them with different behaviour."""
    unsupported: list[str] = []
    if config.HasField("sequence_batching"):
        unsupported.append("sequence_batching")
    if config.model_transaction_policy.decoupled:
        unsupported.append("decoupled transaction policy")
    if config.batch_input:
        unsupported.append("batch_input")
    if config.batch_output:
        unsupported.append("batch_output")
    for tensor in [*config.input, *config.output]:
        if tensor.is_shape_tensor:
            unsupported.append(f"shape tensor '{tensor.name}'")
        if tensor.is_non_linear_format_io:
            unsupported.append(f"non-linear format tensor '{tensor.name}'")
    unsupported.extend(
        f"ragged batching of input '{tensor.name}'" for tensor in config.input if tensor.allow_ragged_batch
    )
    if unsupported:
        raise ConfigError(
            f"model '{config.name}' uses what packserve does not support: {', '.join(unsupported)}"
        )


def validate_tensors(config: ModelConfig) -> None:
    for kind, tensors in (("input", config.input), ("output", config.output)):
        seen: set[str] = set()
        for tensor in tensors:
            validate_tensor(config, kind, tensor)
            if tensor.name in seen:
                raise ConfigError(f"model '{config.name}' has {kind} '{tensor.name}' more than once")
            seen.add(tensor.name)


def validate_tensor(config: ModelConfig, kind: str, tensor: Message) -> None:
    """One input or output: name, data type, dims and reshape."""
    if not tensor.name:
        raise ConfigError(f"model '{config.name}': every {kind} must specify 'name'")
    where = f"model '{config.name}' {kind} '{tensor.name}'"
    type_name = ConfigDataType.Name(tensor.data_type)
    if tensor.data_type == ConfigDataType.TYPE_INVALID:
        raise ConfigError(f"{where} must specify 'data_type'")
    try:
        DataType.from_config(type_name)
    except KeyError:
        raise ConfigError(f"{where} has data type {type_name}, which packserve does not support") from None
    if not tensor.dims:
        raise ConfigError(f"{where} must specify 'dims' (use [1] with an empty reshape for a scalar)")
    _check_dims(where, "dims", tensor.dims)
    if tensor.HasField("reshape"):
        shape = tensor.reshape.shape
        if not shape and config.max_batch_size == 0:
            raise ConfigError(f"{where} cannot have an empty reshape in a model that does not batch")
        _check_dims(where, "reshape", shape)
        _check_reshape_matches(where, list(tensor.dims), list(shape))


def _check_dims(where: str, field_name: str, dims: Iterable[int]) -> None:
    for dim in dims:
        if dim < 1 and dim != WILDCARD_DIM:
            raise ConfigError(
                f"{where} {field_name} must be integers >= 1 or -1 (variable size), got {list(dims)}"
            )


def _segment_counts(dims: list[int]) -> list[int]:
    """Element counts of the runs of fixed dimensions between variable (-1) dimensions."""
    counts = [1]
    for dim in dims:
        if dim == WILDCARD_DIM:
            counts.append(1)
        else:
            counts[-1] *= dim
    return counts


def _check_reshape_matches(where: str, dims: list[int], reshape: list[int]) -> None:
    if not reshape:
        if _segment_counts(dims) != [1]:
            raise ConfigError(f"{where}: an empty reshape needs dims with one element, got dims {dims}")
        return
    dims_segments, reshape_segments = _segment_counts(dims), _segment_counts(reshape)
    if len(dims_segments) != len(reshape_segments):
        raise ConfigError(
            f"{where}: dims {dims} and reshape {reshape} have different numbers of variable (-1) dimensions"
        )
    if dims_segments != reshape_segments:
        raise ConfigError(f"{where}: dims {dims} and reshape {reshape} hold different element counts")


def validate_dynamic_batching(config: ModelConfig) -> None:
    if not config.HasField("dynamic_batching"):
        return
    name, batching = config.name, config.dynamic_batching
    if config.max_batch_size == 0:
        raise ConfigError(
            f"model '{name}' sets dynamic_batching but max_batch_size is 0 (the model does not batch)"
        )
    for size in batching.preferred_batch_size:
        if size < 1 or size > config.max_batch_size:
            raise ConfigError(
                f"model '{name}': dynamic_batching preferred_batch_size {size} must be in "
                f"[1, max_batch_size={config.max_batch_size}]"
            )
    levels = batching.priority_levels
    if levels == 0:
        if batching.default_priority_level != 0 or batching.priority_queue_policy:
            raise ConfigError(
                f"model '{name}': dynamic_batching sets a default_priority_level or priority_queue_policy "
                "but priority_levels is 0"
            )
    else:
        if not 1 <= batching.default_priority_level <= levels:
            raise ConfigError(
                f"model '{name}': dynamic_batching default_priority_level {batching.default_priority_level} "
                f"must be in [1, priority_levels={levels}]"
            )
        for level in batching.priority_queue_policy:
            if not 1 <= level <= levels:
                raise ConfigError(
                    f"model '{name}': dynamic_batching priority_queue_policy level {level} must be in "
                    f"[1, priority_levels={levels}]"
                )
    policies = [("default_queue_policy", batching.default_queue_policy)]
    policies += [
        (f"priority_queue_policy[{level}]", policy)
        for level, policy in sorted(batching.priority_queue_policy.items())
    ]
    if batching.preserve_ordering:
        if levels > 1:
            raise ConfigError(f"model '{name}': preserve_ordering allows one priority level, got {levels}")
        for label, policy in policies:
            if policy.timeout_action == ModelQueuePolicy.DELAY and policy.default_timeout_microseconds:
                raise ConfigError(
                    f"model '{name}': dynamic_batching {label} cannot use timeout_action DELAY "
                    "with preserve_ordering"
                )


def validate_instance_groups(config: ModelConfig, available_gpus: Sequence[int]) -> None:
    name = config.name
    if config.platform in COMPOSITE_PLATFORMS:
        if config.instance_group:
            raise ConfigError(f"{config.platform} model '{name}' must not specify instance_group")
        return
    if not config.instance_group:
        raise ConfigError(f"model '{name}' must specify at least one instance_group")
    seen: set[str] = set()
    gpus = set(available_gpus)
    for group in config.instance_group:
        where = f"model '{name}' instance group '{group.name}'"
        if group.name in seen:
            raise ConfigError(f"model '{name}' has instance group '{group.name}' more than once")
        seen.add(group.name)
        if group.count < 1:
            raise ConfigError(f"{where}: count must be >= 1, got {group.count}")
        kind = ModelInstanceGroup.Kind.Name(group.kind)
        if group.kind == ModelInstanceGroup.KIND_GPU:
            if not gpus:
                raise ConfigError(f"{where} has kind KIND_GPU but no GPUs are available")
            missing = sorted(set(group.gpus) - gpus)
            if missing:
                raise ConfigError(f"{where} asks for GPUs {missing}, available: {sorted(gpus)}")
        elif group.kind in (ModelInstanceGroup.KIND_CPU, ModelInstanceGroup.KIND_MODEL):
            if group.gpus:
                raise ConfigError(f"{where} has kind {kind} but lists GPUs {list(group.gpus)}")
        else:
            raise ConfigError(f"{where} has unresolved kind {kind}")


def validate_version_policy(config: ModelConfig) -> None:
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which is None:
        raise ConfigError(f"model '{config.name}' must specify a version_policy")
    if which == "latest" and policy.latest.num_versions < 1:
        raise ConfigError(
            f"model '{config.name}': version_policy latest num_versions must be >= 1, "
            f"got {policy.latest.num_versions}"
        )
    if which == "specific":
        versions = list(policy.specific.versions)
        if not versions:
            raise ConfigError(f"model '{config.name}': version_policy specific lists no versions")
        if any(version < 1 for version in versions):
            raise ConfigError(
                f"model '{config.name}': version_policy specific versions must be >= 1, got {versions}"
            )


def validate_labels(config: ModelConfig, model_dir: Path) -> None:
    for output in config.output:
        if output.label_filename and not (model_dir / output.label_filename).is_file():
            raise ConfigError(
                f"model '{config.name}' output '{output.name}': label file '{output.label_filename}' "
                f"not found in '{model_dir}'"
            )


def validate_ensemble_scheduling(config: ModelConfig) -> None:
    """`ensemble_scheduling` is present exactly for platform 'ensemble', and every step is complete.
    Data-flow checks (cycles, unproduced tensors) run on the built spec in `ensemble_graph`."""
    name = config.name
    has_scheduling = config.HasField("ensemble_scheduling")
    if config.platform != ENSEMBLE_PLATFORM:
        if has_scheduling:
            raise ConfigError(f"model '{name}' sets ensemble_scheduling but its platform is not 'ensemble'")
        return
    if not has_scheduling or not config.ensemble_scheduling.step:
        raise ConfigError(f"ensemble model '{name}' must specify ensemble_scheduling with at least one step")
    if config.HasField("optimization"):
        raise ConfigError(f"ensemble model '{name}' must not specify optimization")
    if config.model_warmup:
        raise ConfigError(f"ensemble model '{name}' must not specify model_warmup")
    for index, step in enumerate(config.ensemble_scheduling.step):
        where = f"ensemble model '{name}' step {index}"
        if not step.model_name:
            raise ConfigError(f"{where} must specify 'model_name'")
        if not step.input_map:
            raise ConfigError(f"{where} (model '{step.model_name}') must specify 'input_map'")
        if not step.output_map:
            raise ConfigError(f"{where} (model '{step.model_name}') must specify 'output_map'")
        if step.model_version < -1 or step.model_version == 0:
            raise ConfigError(
                f"{where} (model '{step.model_name}'): model_version must be -1 (latest) or >= 1, "
                f"got {step.model_version}"
            )
