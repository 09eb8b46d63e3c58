"""Every ModelConfig field is honoured, refused at load, or accepted with a load-time warning
because it only tunes performance on hardware or libraries packserve does not drive. Nothing is
ignored silently. docs/config-fields.md is the table of all fields; `test_config_fields.py`
checks that the table names every field of model_config.proto.
"""

from __future__ import annotations

import logging

from tritonclient.grpc.model_config_pb2 import ModelConfig, ModelOptimizationPolicy

from packserve.errors import ConfigError

log = logging.getLogger("packserve.config")

# The accelerators the onnxruntime backend maps onto an execution provider (GPU instances only).
_GPU_ACCELERATORS = {"tensorrt"}


def refused_fields(config: ModelConfig) -> list[str]:
    """What the config asks for that packserve does not do, each with the reason."""
    refused: list[str] = []
    if config.runtime:
        refused.append(
            f"runtime '{config.runtime}' (packserve's backends are built in; choose one with 'backend')"
        )
    for group in config.instance_group:
        limiter = group.rate_limiter
        if limiter.resources or limiter.priority:
            refused.append(
                f"instance_group '{group.name}' rate_limiter (packserve has no rate limiter; "
                "instances run whenever their batch is ready)"
            )
        if group.secondary_devices:
            refused.append(f"instance_group '{group.name}' secondary_devices (no backend uses them)")
        if group.passive:
            refused.append(f"instance_group '{group.name}' passive (every packserve instance is scheduled)")
    accelerators = config.optimization.execution_accelerators
    for accelerator in accelerators.cpu_execution_accelerator:
        refused.append(
            f"cpu_execution_accelerator '{accelerator.name}' (no CPU accelerator such as OpenVINO is "
            "available; onnxruntime runs on its default CPU provider)"
        )
    for accelerator in accelerators.gpu_execution_accelerator:
        if accelerator.name not in _GPU_ACCELERATORS or config.backend != "onnxruntime":
            refused.append(
                f"gpu_execution_accelerator '{accelerator.name}' (only 'tensorrt' with the onnxruntime "
                "backend is supported)"
            )
    if config.cc_model_filenames:
        refused.append("cc_model_filenames (packserve loads default_model_filename on every device)")
    if config.model_operations.op_library_filename:
        refused.append("model_operations (custom operation libraries are not loaded)")
    if config.model_repository_agents.agents:
        refused.append(
            "model_repository_agents (repository agents, e.g. checksum or decryption, are not run)"
        )
    for index, step in enumerate(config.ensemble_scheduling.step):
        if step.model_namespace:
            refused.append(f"ensemble step {index} model_namespace (model namespacing is not supported)")
    refused.extend(_newer_proto_fields(config))
    return refused


def _newer_proto_fields(config: ModelConfig) -> list[str]:
    """Fields that model_config.proto gained after Triton 2.51: present only where a newer
    tritonclient supplies the schema (a base install on a newer Python), absent from 2.51's."""
    refused: list[str] = []
    if config.DESCRIPTOR.fields_by_name.get("model_metrics") and config.HasField("model_metrics"):
        refused.append(
            "model_metrics (per-model metric families and histogram buckets are not configurable; "
            "packserve exports Triton 2.51's metrics)"
        )
    ensemble = config.ensemble_scheduling
    if getattr(ensemble, "max_inflight_requests", 0):
        refused.append(
            "ensemble_scheduling.max_inflight_requests (an ensemble's admission is bounded by the "
            "server's queue bounds instead)"
        )
    return refused


def performance_only_fields(config: ModelConfig) -> list[str]:
    """Fields set away from their default that only tune speed on hardware packserve does not
    drive: answers are the same without them, so they load with a warning."""
    optimization = config.optimization
    notes: list[str] = []
    if optimization.priority != ModelOptimizationPolicy.PRIORITY_DEFAULT:
        notes.append("optimization.priority (CUDA stream priority)")
    if optimization.HasField("cuda"):
        notes.append("optimization.cuda (CUDA graphs and copy streams)")
    if optimization.gather_kernel_buffer_threshold:
        notes.append("optimization.gather_kernel_buffer_threshold (GPU gather kernel)")
    if optimization.eager_batching:
        notes.append("optimization.eager_batching (TensorRT)")
    if optimization.HasField("graph") and config.backend not in ("onnxruntime", ""):
        notes.append(f"optimization.graph (the {config.backend} backend has no graph optimizer)")
    for group in config.instance_group:
        if group.profile:
            notes.append(f"instance_group '{group.name}' profile (TensorRT optimization profiles)")
        if group.host_policy:
            notes.append(f"instance_group '{group.name}' host_policy (NUMA placement)")
    if config.metric_tags:
        notes.append("metric_tags (not added to packserve's metrics)")
    return notes


def check_field_policy(config: ModelConfig) -> None:
    """Refuse the config if it uses a refused field; warn about performance-only ones."""
    refused = refused_fields(config)
    if refused:
        raise ConfigError(f"model '{config.name}' sets what packserve does not support: {'; '.join(refused)}")
    notes = performance_only_fields(config)
    if notes:
        log.warning(
            "model '%s': these settings only tune performance and have no effect in packserve: %s",
            config.name,
            "; ".join(notes),
        )
