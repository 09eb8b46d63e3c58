"""Python backend: runs Triton python-backend models (model.py with TritonPythonModel) in-process,
or each instance in a worker process of its own with `isolation: process` (isolated.py).

As in Triton, every instance gets its own copy of the user's module and its own TritonPythonModel
object (Triton runs each instance in its own stub process), so module-level state is never shared
between instances. `initialize` runs on the loader thread, `execute` on the instance's worker
thread, `finalize` on the loader thread at unload.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import itertools
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from packserve.backends.base import (
    BackendInstance,
    BackendModel,
    BatchResult,
    ExecutionTimer,
    InstanceContext,
    ModelContext,
)
from packserve.backends.batch_rows import output_names_for
from packserve.backends.limits import execution_limits
from packserve.backends.python import pb_utils
from packserve.backends.python.bls import bls_scope
from packserve.backends.python.isolated import IsolatedPythonInstance
from packserve.backends.python.responses import pb_request_parameters, response_outputs
from packserve.backends.python.shm_arena import remove_stale_arenas, shm_dir
from packserve.errors import (
    ConfigError,
    ModelExecutionError,
    ModelLoadError,
    PackserveError,
)
from packserve.messages import InferRequest, Tensor
from packserve.model_config_json import config_to_json
from packserve.model_spec import InstanceKind

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

log = logging.getLogger(__name__)

PB_UTILS_MODULE = "triton_python_backend_utils"
_MODEL_FILENAME = "model.py"
_module_counter = itertools.count()


def install_pb_utils() -> ModuleType:
    """Make `import triton_python_backend_utils` resolve to packserve's implementation."""
    if sys.modules.get(PB_UTILS_MODULE) is not pb_utils:
        sys.modules[PB_UTILS_MODULE] = pb_utils
    return pb_utils


def load_user_module(path: Path, model_name: str) -> ModuleType:
    """Import a model.py under a name of its own, so instances and versions never share state."""
    if not path.is_file():
        raise ModelLoadError(f"model '{model_name}': python model file '{path}' not found")
    install_pb_utils()
    # Triton lets model.py import helper modules kept beside it.
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    module_name = f"packserve_python_model_{model_name}_{next(_module_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"model '{model_name}': cannot import '{path}'")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # anything the user's module raises at import
        sys.modules.pop(module_name, None)
        raise ModelLoadError(
            f"model '{model_name}': importing '{path}' failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(getattr(module, "TritonPythonModel", None), type):
        sys.modules.pop(module_name, None)
        raise ModelLoadError(f"model '{model_name}': '{path}' defines no class TritonPythonModel")
    return module


class PythonModel(BackendModel):
    default_model_filename = _MODEL_FILENAME

    def __init__(self, context: ModelContext) -> None:
        super().__init__(context)
        install_pb_utils()
        if context.config.model_transaction_policy.decoupled:
            raise ConfigError(f"model '{context.spec.name}': decoupled python models are not supported")
        if not context.model_file.is_file():
            raise ModelLoadError(
                f"model '{context.spec.name}': python model file '{context.model_file}' not found"
            )
        self._config_json = json.dumps(config_to_json(context.config))
        self._limits = execution_limits(context.spec)

    @classmethod
    def complete_config(cls, config: ModelConfig, version_dir: Path) -> None:
        path = version_dir / (config.default_model_filename or _MODEL_FILENAME)
        module = load_user_module(path, config.name)
        try:
            model_class = module.TritonPythonModel
            hook = getattr(model_class, "auto_complete_config", None)
            if hook is None:
                return
            completed = _run_auto_complete(config, hook)
        finally:
            sys.modules.pop(module.__name__, None)
        from google.protobuf import json_format
        from tritonclient.grpc.model_config_pb2 import ModelConfig as ModelConfigProto

        try:
            parsed = json_format.ParseDict(completed, ModelConfigProto())
        except json_format.ParseError as exc:
            raise ConfigError(
                f"model '{config.name}': auto_complete_config returned an invalid config: {exc}"
            ) from exc
        config.CopyFrom(parsed)

    def create_instance(self, instance: InstanceContext) -> BackendInstance:
        context = self.context
        args = self._initialize_args(instance)
        if self._limits.isolated:
            _clean_stale_arenas_once()
            return IsolatedPythonInstance(
                context.spec,
                instance.name,
                {"model_name": context.spec.name, "model_file": str(context.model_file), "args": args},
                self._limits,
                context.bls,
                f"{shm_dir()}/packserve-{os.getpid()}-{next(_module_counter)}",
            )
        module = load_user_module(context.model_file, context.spec.name)
        try:
            user_model = module.TritonPythonModel()
            initialize = getattr(user_model, "initialize", None)
            if initialize is not None:
                initialize(args)
        except Exception as exc:  # whatever the user's initialize raises
            sys.modules.pop(module.__name__, None)
            raise ModelLoadError(
                f"model '{context.spec.name}': initialize() of instance '{instance.name}' failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return PythonInstance(context, module, user_model)

    def _initialize_args(self, instance: InstanceContext) -> dict[str, str]:
        context = self.context
        return {
            "model_config": self._config_json,
            "model_instance_kind": "GPU" if instance.kind == InstanceKind.GPU else "CPU",
            "model_instance_name": instance.name,
            "model_instance_device_id": str(instance.device_id),
            # Triton passes the model's own folder under this key.
            "model_repository": str(context.model_dir),
            "model_version": str(context.version),
            "model_name": context.spec.name,
        }


_stale_arenas_checked = False


def _clean_stale_arenas_once() -> None:
    """A server that was SIGKILLed left its arena files in /dev/shm: remove them once."""
    global _stale_arenas_checked
    if not _stale_arenas_checked:
        _stale_arenas_checked = True
        removed = remove_stale_arenas(shm_dir())
        if removed:
            log.info("removed %d shared-memory arena files left by dead servers", removed)


def _run_auto_complete(config: ModelConfig, hook: Any) -> dict[str, Any]:
    wrapped = pb_utils.ModelConfig(json.dumps(config_to_json(config)))
    try:
        result = hook(wrapped)
    except (ValueError, pb_utils.TritonModelException) as exc:
        raise ConfigError(f"model '{config.name}': auto_complete_config: {exc}") from exc
    except Exception as exc:  # the user's hook may raise anything
        raise ConfigError(
            f"model '{config.name}': auto_complete_config raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(result, pb_utils.ModelConfig):
        raise ConfigError(
            f"model '{config.name}': auto_complete_config must return the ModelConfig it was given"
        )
    return result.as_dict()


class PythonInstance(BackendInstance):
    def __init__(self, context: ModelContext, module: ModuleType, user_model: Any) -> None:
        self._context = context
        self._module = module
        self._model = user_model
        self._name = context.spec.name

    @property
    def triton_model(self) -> Any:
        """The user's TritonPythonModel object of this instance."""
        return self._model

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        wanted = [output_names_for(request, self._context.spec) for request in requests]
        pb_requests = [
            self._pb_request(request, names) for request, names in zip(requests, wanted, strict=True)
        ]
        timer.inputs_ready()
        try:
            with bls_scope(self._context.bls, self._name):
                responses = self._model.execute(pb_requests)
                if inspect.iscoroutine(responses):  # `async def execute`, as Triton allows
                    responses = asyncio.run(responses)
        except Exception as exc:  # the user's execute may raise anything; it fails the whole batch
            raise ModelExecutionError(
                f"model '{self._name}': execute() raised {type(exc).__name__}: {exc}"
            ) from exc
        timer.infer_done()
        if not isinstance(responses, list | tuple) or len(responses) != len(requests):
            got = (
                f"{len(responses)} responses"
                if isinstance(responses, list | tuple)
                else repr(type(responses))
            )
            raise ModelExecutionError(
                f"model '{self._name}': execute() must return one response per request: "
                f"expected {len(requests)}, got {got}"
            )
        return [self._outputs(response, names) for response, names in zip(responses, wanted, strict=True)]

    def close(self) -> None:
        finalize = getattr(self._model, "finalize", None)
        try:
            if finalize is not None:
                finalize()
        except Exception:  # a failing finalize must not stop the unload
            log.exception("model '%s': finalize() failed", self._name)
        finally:
            sys.modules.pop(self._module.__name__, None)

    def _pb_request(self, request: InferRequest, names: list[str]) -> pb_utils.InferenceRequest:
        return pb_utils.InferenceRequest(
            model_name=self._name,
            requested_output_names=names,
            inputs=[pb_utils.Tensor(name, tensor) for name, tensor in request.inputs.items()],
            request_id=request.id,
            parameters=pb_request_parameters(request),
        )

    def _outputs(self, response: Any, names: list[str]) -> dict[str, Tensor] | PackserveError:
        if not isinstance(response, pb_utils.InferenceResponse):
            return ModelExecutionError(
                f"model '{self._name}': execute() returned {type(response).__name__}, "
                "expected InferenceResponse"
            )
        error = response.error()
        described: tuple[int, str] | None = None
        if error is not None:
            message = error.message() if isinstance(error, pb_utils.TritonError) else str(error)
            code = error.code() if isinstance(error, pb_utils.TritonError) else pb_utils.TritonError.INTERNAL
            described = (code, message)
        produced = {tensor.name(): tensor.data() for tensor in response.output_tensors()}
        return response_outputs(self._name, described, produced, names)
