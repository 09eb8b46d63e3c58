"""PyTorch backend: TorchScript (`torch.jit.load`) and torch.export (`.pt2`) models.

Instances on one device share one loaded module (weights are read-only at inference). A GPU
instance runs on its own CUDA stream, keeps tensors that arrive in GPU memory where they are and
returns its outputs as torch tensors on the device; a CPU instance returns numpy arrays. Modules
are loaded on the loader thread; `execute` runs on the instance's worker thread. torch is imported
only here, on first use, so `import packserve` never needs it.
"""

from __future__ import annotations

import contextlib
import re
import threading
import warnings
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
from packserve.backends.batch_rows import output_names_for, request_rows, same_row_shapes, split_rows
from packserve.backends.gpu_budget import LEDGER, MemoryNeed, check_fits, measure_need, parse_budget
from packserve.errors import ConfigError, ModelExecutionError, ModelLoadError
from packserve.messages import InferRequest, Tensor
from packserve.model_spec import InstanceKind, ModelSpec, TensorSpec
from packserve.types import DataType

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

_MODEL_FILENAME = "model.pt"
# Triton's naming convention: "<name>__<index>" gives the tensor's position in forward()/the result.
_INDEXED_NAME = re.compile(r"^.+__(\d+)$")


def tensor_positions(tensors: Sequence[TensorSpec], argument_names: Sequence[str] = ()) -> list[str]:
    """Config tensor names in the order the model takes (inputs) or returns (outputs) them:
    by `__<index>` suffix when every name has one, else by forward()'s argument names when they
    cover the config, else config order."""
    names = [tensor.name for tensor in tensors]
    indexed = [_INDEXED_NAME.match(name) for name in names]
    if names and all(indexed):
        positions = {name: int(match.group(1)) for name, match in zip(names, indexed, strict=True) if match}
        if sorted(positions.values()) == list(range(len(names))):
            return sorted(names, key=positions.__getitem__)
    if argument_names and set(names) <= set(argument_names):
        return sorted(names, key=list(argument_names).index)
    return names


class TorchModel(BackendModel):
    default_model_filename = _MODEL_FILENAME

    def __init__(self, context: ModelContext) -> None:
        super().__init__(context)
        try:
            import torch  # noqa: F401 - fail the load early with a clear message
        except ImportError as exc:
            raise ModelLoadError(
                f"model '{context.spec.name}': the pytorch backend needs torch: {exc}"
            ) from exc
        for tensor in (*context.spec.inputs, *context.spec.outputs):
            if tensor.datatype is DataType.BYTES:
                raise ConfigError(
                    f"model '{context.spec.name}', tensor '{tensor.name}': TYPE_STRING is not supported by "
                    "the pytorch backend"
                )
        self._lock = threading.Lock()
        self._modules: dict[str, Any] = {}
        self._budget = parse_budget(context.spec.name, context.spec.parameters)
        self.memory_need: MemoryNeed | None = None  # measured at load when the model has a budget
        group = context.spec.instance_groups[0] if context.spec.instance_groups else None
        kind = group.kind if group else InstanceKind.CPU
        self._module_for(device_name(kind, group.gpus[0] if group and group.gpus else 0))

    @classmethod
    def complete_config(cls, config: ModelConfig, version_dir: Path) -> None:
        # A TorchScript file does not declare its tensors' types and shapes; Triton requires them too.
        if not config.input or not config.output:
            raise ConfigError(
                f"model '{config.name}': the pytorch backend cannot auto-complete a config; "
                "list every input and output with data_type and dims"
            )

    def create_instance(self, instance: InstanceContext) -> BackendInstance:
        device = device_name(instance.kind, instance.device_id)
        return TorchInstance(self.context, self._module_for(device), device)

    def close(self) -> None:
        with self._lock:
            for device in self._modules:
                LEDGER.release(device, self.context.spec.name, self)
            self._modules.clear()

    def _module_for(self, device: str) -> Any:
        with self._lock:
            module = self._modules.get(device)
            if module is None:
                module = self._load(device)
                self._modules[device] = module
            return module

    def _load(self, device: str) -> Any:
        import torch

        name = self.context.spec.name
        path = self.context.version_dir / (self.context.config.default_model_filename or _MODEL_FILENAME)
        if not path.is_file():
            raise ModelLoadError(f"model '{name}': model file '{path}' not found")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError(
                f"model '{name}': a KIND_GPU instance needs CUDA, which this torch cannot use"
            )
        try:
            if path.suffix == ".pt2":
                module = torch.export.load(str(path)).module().to(device)
            else:
                with warnings.catch_warnings():
                    # torch 2.9+ marks TorchScript deprecated; Triton repositories still ship it.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    module = torch.jit.load(str(path), map_location=device)
                module.eval()
        except Exception as exc:  # torch raises RuntimeError, pickle and zip errors...
            raise ModelLoadError(f"model '{name}': torch cannot load '{path}': {exc}") from exc
        if self._budget is not None:
            try:
                need = measure_need(module, device, self._warmup(module, device))
            except Exception as exc:  # the warm-up ran the model: torch raises anything
                raise ModelLoadError(f"model '{name}': the budget's warm-up run failed: {exc}") from exc
            check_fits(name, device, self._budget, need)
            LEDGER.reserve(device, name, self._budget, self)
            self.memory_need = need
        return module

    def _warmup(self, module: Any, device: str) -> Any:
        """A run at the largest batch on zeros, for the budget's working memory; None when an input
        has a variable dimension (no shape to run it at)."""
        import torch

        spec = self.context.spec
        if any(-1 in (t.reshape or t.dims) for t in spec.inputs):
            return None
        batch = (spec.max_batch_size,) if spec.batching else ()
        by_name = {t.name: t for t in spec.inputs}
        order = tensor_positions(spec.inputs, _argument_names(module))
        arguments = [
            torch.zeros(
                (*batch, *(by_name[n].reshape or by_name[n].dims)),
                dtype=getattr(torch, str(by_name[n].datatype.numpy)),
                device=device,
            )
            for n in order
        ]
        return lambda: module(*arguments)


def device_name(kind: InstanceKind, device_id: int) -> str:
    return f"cuda:{device_id}" if kind == InstanceKind.GPU else "cpu"


def _argument_names(module: Any) -> list[str]:
    schema = getattr(getattr(module, "forward", None), "schema", None)
    if schema is not None:  # TorchScript
        return [argument.name for argument in schema.arguments if argument.name != "self"]
    import inspect

    try:
        return list(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        return []


class TorchInstance(BackendInstance):
    def __init__(self, context: ModelContext, module: Any, device: str) -> None:
        import torch

        self._spec: ModelSpec = context.spec
        self._module = module
        self._device = torch.device(device)
        self._on_gpu = self._device.type == "cuda"
        # Each GPU instance gets its own stream so instances overlap on the device.
        self._stream = torch.cuda.Stream(device=self._device) if self._on_gpu else None
        self._batching = context.spec.batching
        self._input_order = tensor_positions(context.spec.inputs, _argument_names(module))
        self._output_order = tensor_positions(context.spec.outputs)

    @property
    def may_run_inline(self) -> bool:
        import torch

        # A CUDA run ends waiting on its stream; several CPU threads leave the caller waiting.
        return not self._on_gpu and torch.get_num_threads() == 1

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        import torch

        groups = [list(requests)] if self._batching and same_row_shapes(requests) else [[r] for r in requests]
        stream = torch.cuda.stream(self._stream) if self._stream is not None else contextlib.nullcontext()
        with torch.inference_mode(), stream:
            arguments = [self._arguments(group) for group in groups]
            timer.inputs_ready()
            produced = [self._run(args) for args in arguments]
            if self._stream is not None:
                # Outputs must be complete before another stream (the next step) reads them.
                self._stream.synchronize()
            timer.infer_done()
            batch: BatchResult = []
            for group, outputs in zip(groups, produced, strict=True):
                rows = request_rows(group, self._batching)
                pieces = {name: split_rows(self._returned(tensor), rows) for name, tensor in outputs.items()}
                for index, request in enumerate(group):
                    batch.append(
                        {name: pieces[name][index] for name in output_names_for(request, self._spec)}
                    )
        return batch

    def _arguments(self, group: list[InferRequest]) -> list[Any]:
        import torch

        arguments = []
        for name in self._input_order:
            parts = [self._to_device(request.inputs[name]) for request in group]
            arguments.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=0))
        return arguments

    def _to_device(self, tensor: Tensor) -> Any:
        import torch

        if isinstance(tensor, np.ndarray):
            if tensor.flags.writeable:
                tensor = torch.from_numpy(tensor)
            else:
                # Read-only wire buffers are shared, not copied; models do not write their inputs.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    tensor = torch.from_numpy(tensor)
        if tensor.device != self._device:
            tensor = tensor.to(self._device, non_blocking=True)
        return tensor

    def _run(self, arguments: list[Any]) -> dict[str, Any]:
        try:
            result = self._module(*arguments)
        except Exception as exc:  # TorchScript raises RuntimeError/torch.jit.Error; export raises anything
            raise ModelExecutionError(f"model '{self._spec.name}': torch failed: {exc}") from exc
        if isinstance(result, dict):
            missing = [name for name in self._output_order if name not in result]
            if missing:
                raise ModelExecutionError(
                    f"model '{self._spec.name}': the model returned no output {missing}"
                )
            return {name: result[name] for name in self._output_order}
        values = list(result) if isinstance(result, list | tuple) else [result]
        if len(values) != len(self._output_order):
            raise ModelExecutionError(
                f"model '{self._spec.name}': the model returned {len(values)} tensors, "
                f"the config lists {len(self._output_order)} outputs"
            )
        return dict(zip(self._output_order, values, strict=True))

    def _returned(self, tensor: Any) -> Any:
        # GPU outputs stay on the device for the next step; CPU outputs become numpy (shared memory).
        return tensor if self._on_gpu else tensor.numpy()
