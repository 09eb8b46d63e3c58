"""ONNX Runtime backend: one InferenceSession per model version and device, shared by instances.

`InferenceSession.run` is thread-safe, so N instances on one device share one session and one copy
of the weights; each instance is only a worker thread calling `run`. Sessions are built on the
loader thread; `execute` runs on the instance's worker thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from packserve.backends.base import (
    BackendInstance,
    BackendModel,
    BatchResult,
    ExecutionTimer,
    InstanceContext,
    ModelContext,
)
from packserve.backends.batch_rows import (
    gather_inputs,
    output_names_for,
    request_rows,
    same_row_shapes,
    split_rows,
    union_output_names,
)
from packserve.backends.onnx_signature import (
    ConfiguredTensor,
    GraphSignature,
    check_all_inputs_configured,
    check_tensors,
    signature_from_file,
    signature_from_session,
)
from packserve.errors import ConfigError, InvalidArgumentError, ModelExecutionError, ModelLoadError
from packserve.messages import InferRequest, Tensor, to_host
from packserve.model_spec import InstanceKind
from packserve.types import DataType

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

log = logging.getLogger(__name__)

# Triton's onnxruntime backend auto-fills this max_batch_size ("default-max-batch-size") for graphs
# whose every tensor has a variable first dimension.
DEFAULT_MAX_BATCH_SIZE = 4
_MODEL_FILENAME = "model.onnx"
_TYPE_INVALID = 0  # model_config.proto DataType.TYPE_INVALID: the config left data_type unset


class OnnxRuntimeModel(BackendModel):
    default_model_filename = _MODEL_FILENAME

    def __init__(self, context: ModelContext) -> None:
        super().__init__(context)
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, int], Any] = {}
        # Build the session the first instance group needs now, so a bad file or a config that
        # disagrees with the graph fails the load rather than the first request.
        group = context.spec.instance_groups[0] if context.spec.instance_groups else None
        kind = group.kind if group is not None else InstanceKind.CPU
        device = group.gpus[0] if group is not None and group.gpus else 0
        self._session_for(kind, device)

    @classmethod
    def complete_config(cls, config: ModelConfig, version_dir: Path) -> None:
        path = version_dir / (config.default_model_filename or _MODEL_FILENAME)
        if not path.is_file():
            raise ConfigError(f"model '{config.name}': model file '{path}' not found")
        complete_from_signature(config, signature_from_file(path))

    def create_instance(self, instance: InstanceContext) -> BackendInstance:
        return OnnxRuntimeInstance(self.context, self._session_for(instance.kind, instance.device_id))

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()

    def _session_for(self, kind: InstanceKind, device_id: int) -> Any:
        key = ("gpu", device_id) if kind == InstanceKind.GPU else ("cpu", 0)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = self._create_session(kind, device_id)
                check_config_against(self.context, signature_from_session(session))
                self._sessions[key] = session
            return session

    def _create_session(self, kind: InstanceKind, device_id: int) -> Any:
        import onnxruntime as ort

        config = self.context.config
        name = self.context.spec.name
        path = self.context.version_dir / (config.default_model_filename or _MODEL_FILENAME)
        if not path.is_file():
            raise ModelLoadError(f"model '{name}': model file '{path}' not found")
        providers = execution_providers(config, kind, device_id, ort.get_available_providers())
        try:
            return ort.InferenceSession(
                str(path), sess_options=session_options(self.context), providers=providers
            )
        except Exception as exc:  # ORT raises its own pybind exception types
            raise ModelLoadError(f"model '{name}': onnxruntime cannot load '{path}': {exc}") from exc


def session_options(context: ModelContext) -> Any:
    import onnxruntime as ort

    params = context.spec.parameters
    options = ort.SessionOptions()
    # One intra-op thread by default: parallelism comes from instances and models, and idle pools
    # spinning next to each other burn the cores the other models need.
    options.intra_op_num_threads = _int_parameter(context, "intra_op_thread_count", 1)
    options.inter_op_num_threads = _int_parameter(context, "inter_op_thread_count", 1)
    options.add_session_config_entry("session.intra_op.allow_spinning", params.get("allow_spinning", "0"))
    level = context.config.optimization.graph.level
    options.graph_optimization_level = {
        -1: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }.get(level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    return options


def _int_parameter(context: ModelContext, key: str, default: int) -> int:
    raw = context.spec.parameters.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"model '{context.spec.name}': parameter '{key}' must be an integer, got '{raw}'"
        ) from None
    if value < 0:
        raise ConfigError(f"model '{context.spec.name}': parameter '{key}' must be >= 0, got {value}")
    return value


def execution_providers(
    config: ModelConfig, kind: InstanceKind, device_id: int, available: Sequence[str]
) -> list[Any]:
    """The provider list for one instance kind and device, CPU always last as the fallback."""
    if kind != InstanceKind.GPU:
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise ModelLoadError(
            f"model '{config.name}': a KIND_GPU instance needs onnxruntime-gpu (CUDAExecutionProvider); "
            f"the installed onnxruntime provides {', '.join(available)}"
        )
    providers: list[Any] = []
    for accelerator in config.optimization.execution_accelerators.gpu_execution_accelerator:
        if accelerator.name != "tensorrt":
            continue
        if "TensorrtExecutionProvider" not in available:
            log.warning(
                "model '%s': TensorRT accelerator asked for but not available; using CUDA", config.name
            )
            continue
        options: dict[str, Any] = {"device_id": device_id}
        params = dict(accelerator.parameters)
        if params.get("precision_mode", "").upper() == "FP16":
            options["trt_fp16_enable"] = True
        if "max_workspace_size_bytes" in params:
            options["trt_max_workspace_size"] = int(params["max_workspace_size_bytes"])
        if params.get("trt_engine_cache_enable", "").lower() in ("1", "true"):
            options["trt_engine_cache_enable"] = True
            options["trt_engine_cache_path"] = params.get("trt_engine_cache_path", "")
        providers.append(("TensorrtExecutionProvider", options))
    providers.append(("CUDAExecutionProvider", {"device_id": device_id}))
    providers.append("CPUExecutionProvider")
    return providers


def configured_tensors(context: ModelContext, role: str) -> list[ConfiguredTensor]:
    tensors = context.spec.inputs if role == "input" else context.spec.outputs
    return [
        ConfiguredTensor(t.name, t.datatype, t.reshape if t.reshape is not None else t.dims) for t in tensors
    ]


def check_config_against(context: ModelContext, graph: GraphSignature) -> None:
    """Load-time check: every config tensor exists in the graph with the same type and shape."""
    name = context.spec.name
    batching = context.spec.batching
    inputs = configured_tensors(context, "input")
    check_tensors(name, "input", inputs, graph.inputs, batching)
    check_tensors(name, "output", configured_tensors(context, "output"), graph.outputs, batching)
    check_all_inputs_configured(name, inputs, graph)


def complete_from_signature(config: ModelConfig, graph: GraphSignature) -> None:
    """Triton-style auto-complete: batching, then inputs and outputs, from the graph."""
    given = [*config.input, *config.output]
    # A config giving full-rank dims (batch dim included) says the model does not batch.
    full_rank_given = any(
        len(t.dims) > 0 and len(t.dims) == len(g.shape)
        for t in given
        for g in (*graph.inputs, *graph.outputs)
        if g.name == t.name
    )
    if config.max_batch_size == 0 and graph.batchable() and not full_rank_given:
        config.max_batch_size = DEFAULT_MAX_BATCH_SIZE
        if not config.HasField("sequence_batching") and not config.HasField("ensemble_scheduling"):
            config.dynamic_batching.SetInParent()
    batching = config.max_batch_size > 0
    _complete_role(config, "input", config.input, graph.inputs, batching, add_missing=True)
    # Triton lets a config list a subset of outputs; fill them only when it lists none.
    _complete_role(
        config, "output", config.output, graph.outputs, batching, add_missing=len(config.output) == 0
    )


def _complete_role(
    config: ModelConfig,
    role: str,
    entries: Any,
    graph_tensors: Sequence[Any],
    batching: bool,
    add_missing: bool,
) -> None:
    from tritonclient.grpc import model_config_pb2

    configured = []
    for entry in entries:
        datatype = None if entry.data_type == _TYPE_INVALID else _datatype_of(config.name, role, entry)
        shape = tuple(entry.reshape.shape) if entry.HasField("reshape") else tuple(entry.dims)
        configured.append(ConfiguredTensor(entry.name, datatype, shape if entry.dims else None))
    check_tensors(config.name, role, configured, graph_tensors, batching)
    by_name = {tensor.name: tensor for tensor in graph_tensors}
    for entry in entries:
        graph = by_name[entry.name]
        graph_type = graph.datatype
        assert graph_type is not None  # check_tensors rejected protocol-less types
        if entry.data_type == _TYPE_INVALID:
            entry.data_type = model_config_pb2.DataType.Value(graph_type.config_name)
        if not entry.dims:
            entry.dims.extend(graph.shape[1:] if batching else graph.shape)
    if not add_missing:
        return
    listed = {entry.name for entry in entries}
    for graph in graph_tensors:
        if graph.name in listed:
            continue
        graph_type = graph.datatype
        if graph_type is None:
            raise ConfigError(
                f"model '{config.name}', {role} '{graph.name}': the ONNX graph uses {graph.type_name}, "
                "which the KServe v2 protocol cannot carry"
            )
        if batching and (not graph.shape or graph.shape[0] != -1):
            raise ConfigError(
                f"model '{config.name}', {role} '{graph.name}': max_batch_size > 0 needs a variable "
                f"first dimension, but the ONNX graph's shape is {list(graph.shape)}"
            )
        entry = entries.add()
        entry.name = graph.name
        entry.data_type = model_config_pb2.DataType.Value(graph_type.config_name)
        entry.dims.extend(graph.shape[1:] if batching else graph.shape)


def _datatype_of(model: str, role: str, entry: Any) -> DataType:
    from tritonclient.grpc import model_config_pb2

    config_name = model_config_pb2.DataType.Name(entry.data_type)
    try:
        return DataType.from_config(config_name)
    except KeyError:
        raise ConfigError(
            f"model '{model}', {role} '{entry.name}': data type {config_name} is not supported"
        ) from None


class OnnxRuntimeInstance(BackendInstance):
    """One worker's handle on a shared session; holds nothing of its own."""

    def __init__(self, context: ModelContext, session: Any) -> None:
        self._context = context
        self._session = session
        self._spec = context.spec
        self._batching = context.spec.batching
        self._bytes_inputs = {t.name for t in context.spec.inputs if t.datatype is DataType.BYTES}
        # 0 intra-op threads is ONNX Runtime's "one per core".
        self._cores = session.get_session_options().intra_op_num_threads or (os.cpu_count() or 1)

    @property
    def session(self) -> Any:
        return self._session

    @property
    def may_run_inline(self) -> bool:
        # CPU provider alone (a GPU provider's run waits on the device) and one intra-op thread
        # (with more, the caller waits for the pool).
        return (
            list(self._session.get_providers()) == ["CPUExecutionProvider"]
            and self._session.get_session_options().intra_op_num_threads == 1
        )

    def cpu_cores(self, rows: int) -> int:
        return self._cores

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        # Requests whose non-batch dims differ (variable dims) cannot share one run: one run per
        # distinct row shape (e.g. text-line crops bucketed by width); results keep request order.
        if self._batching and same_row_shapes(requests):
            groups = [list(range(len(requests)))]
        elif self._batching:
            by_shape: dict[tuple[tuple[str, tuple[int, ...]], ...], list[int]] = {}
            for index, request in enumerate(requests):
                key = tuple((name, tuple(t.shape[1:])) for name, t in request.inputs.items())
                by_shape.setdefault(key, []).append(index)
            groups = list(by_shape.values())
        else:
            groups = [[index] for index in range(len(requests))]
        members = [[requests[i] for i in group] for group in groups]
        feeds = [self._feeds(group) for group in members]
        timer.inputs_ready()
        results = [self._run(group, feed) for group, feed in zip(members, feeds, strict=True)]
        timer.infer_done()
        batch: BatchResult = [{} for _ in requests]
        for indices, group, (names, outputs) in zip(groups, members, results, strict=True):
            rows = request_rows(group, self._batching)
            pieces = {name: split_rows(array, rows) for name, array in zip(names, outputs, strict=True)}
            for position, (index, request) in enumerate(zip(indices, group, strict=True)):
                wanted = output_names_for(request, self._spec)
                batch[index] = {name: pieces[name][position] for name in wanted}
        return batch

    def _feeds(self, group: list[InferRequest]) -> dict[str, np.ndarray]:
        gathered = gather_inputs(group, _concat_rows)
        feeds = {}
        for name, tensor in gathered.items():
            array = to_host(tensor)
            feeds[name] = self._text_array(name, array) if name in self._bytes_inputs else array
        return feeds

    def _run(self, group: list[InferRequest], feeds: dict[str, np.ndarray]) -> tuple[list[str], list[Any]]:
        names = union_output_names(group, self._spec)
        try:
            outputs = self._session.run(names, feeds)
        except Exception as exc:  # onnxruntime's pybind exceptions share no useful base class
            raise ModelExecutionError(f"model '{self._spec.name}': onnxruntime failed: {exc}") from exc
        return names, [_bytes_array(out) if out.dtype == np.object_ else out for out in outputs]

    def _text_array(self, name: str, array: np.ndarray) -> np.ndarray:
        # ORT string tensors take str elements; given bytes it would store their repr.
        try:
            text = [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in array.flat]
        except UnicodeDecodeError as exc:
            raise InvalidArgumentError(
                f"model '{self._spec.name}', input '{name}': BYTES elements must be UTF-8 text for an "
                f"ONNX string tensor ({exc})"
            ) from None
        return np.array(text, dtype=np.object_).reshape(array.shape)


def _concat_rows(parts: list[Tensor]) -> np.ndarray:
    return np.concatenate([to_host(part) for part in parts], axis=0)


def _bytes_array(array: np.ndarray) -> np.ndarray:
    encoded = [item.encode("utf-8") if isinstance(item, str) else item for item in array.flat]
    return np.array(encoded, dtype=np.object_).reshape(array.shape)
