"""`inference.GRPCInferenceService` on top of the engine.

Every handler runs on the event loop, called by either gRPC transport (grpc.aio or the native
one) with a `CallContext`. Errors leave through one place, `_abort`, which maps
them with the shared status table; an unexpected exception is logged and becomes INTERNAL, and the
server keeps serving. System shared memory is served; CUDA shared memory answers an empty status
and refuses registration (UNIMPLEMENTED) with the reason. Trace settings are served (Triton's trace
extension); log RPCs are left UNIMPLEMENTED (the server does not list that extension).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2, service_pb2_grpc

from packserve.core.engine_api import EngineApi
from packserve.errors import InvalidArgumentError, PackserveError, UnsupportedError
from packserve.frontends import header_forward, request_log
from packserve.frontends.grpc import codec, messages
from packserve.frontends.grpc.call_context import DESERIALIZE_FAILED, CallContext, method_name
from packserve.frontends.grpc.codec_wire import RequestPlan, WireCodec
from packserve.frontends.status import grpc_status

logger = logging.getLogger(__name__)
T = TypeVar("T")

CUDA_SHM_UNSUPPORTED = (
    "CUDA shared memory is not supported by packserve: register system shared memory instead"
)

_CONFIG_OVERRIDE = "config"
_FILE_PREFIX = "file:"
_UNLOAD_DEPENDENTS = "unload_dependents"
# Asked for by streaming clients (perf_analyzer among them) to learn which response ends a request.
_ENABLE_FINAL_FLAG = "triton_enable_empty_final_response"
_FINAL_FLAG = "triton_final_response"


async def _abort(context: CallContext, error: Exception, target: str = "") -> NoReturn:
    request_log.FAILED.failed("gRPC", target or method_name(context), error)
    await context.abort(grpc_status(error), _message(error))
    raise AssertionError("context.abort returned")  # abort always raises; this keeps mypy honest


def _infer_detail(request: Any) -> str:
    """What --log-verbose=2 adds to an inference's line: its inputs' names, types and shapes."""
    return " ".join(f"{i.name}:{i.datatype}{list(i.shape)}" for i in request.inputs)


def _message(error: Exception) -> str:
    if isinstance(error, PackserveError):
        return str(error)
    return f"internal error: {type(error).__name__}: {error}"


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, engine: EngineApi) -> None:
        self._engine = engine
        self._wire = WireCodec()

    async def ServerLive(self, request: Any, context: CallContext) -> Any:
        return service_pb2.ServerLiveResponse(live=self._engine.is_live())

    async def ServerReady(self, request: Any, context: CallContext) -> Any:
        return service_pb2.ServerReadyResponse(ready=self._engine.is_ready())

    async def ModelReady(self, request: Any, context: CallContext) -> Any:
        return service_pb2.ModelReadyResponse(ready=self._engine.model_ready(request.name, request.version))

    async def ServerMetadata(self, request: Any, context: CallContext) -> Any:
        try:
            return messages.server_metadata(self._engine.server_metadata())
        except Exception as error:
            await _abort(context, error)

    async def ModelMetadata(self, request: Any, context: CallContext) -> Any:
        try:
            return messages.model_metadata(self._engine.model_metadata(request.name, request.version))
        except Exception as error:
            await _abort(context, error)

    async def ModelConfig(self, request: Any, context: CallContext) -> Any:
        try:
            response = service_pb2.ModelConfigResponse()
            response.config.CopyFrom(self._engine.model_config(request.name, request.version))
            return response
        except Exception as error:
            await _abort(context, error)

    async def ModelStatistics(self, request: Any, context: CallContext) -> Any:
        try:
            return messages.model_statistics(self._engine.model_statistics(request.name, request.version))
        except Exception as error:
            await _abort(context, error)

    async def RepositoryIndex(self, request: Any, context: CallContext) -> Any:
        try:
            return messages.repository_index(self._engine.repository_index(ready_only=request.ready))
        except Exception as error:
            await _abort(context, error)

    async def RepositoryModelLoad(self, request: Any, context: CallContext) -> Any:
        try:
            config_json: str | None = None
            files: dict[str, bytes] = {}
            for key, parameter in request.parameters.items():
                value = codec.parameter_value(parameter)
                if key == _CONFIG_OVERRIDE:
                    config_json = value if isinstance(value, str) else bytes(value).decode("utf-8")
                elif key.startswith(_FILE_PREFIX):
                    # Triton's key is "file:<path in the version directory>"; the engine gets the path.
                    content = value if isinstance(value, bytes) else str(value).encode()
                    files[key[len(_FILE_PREFIX) :]] = content
            if files and config_json is None:
                # As Triton: uploaded files replace the model's own, so they need a config beside them.
                raise InvalidArgumentError(
                    f"load of '{request.model_name}': 'file:' parameters need a 'config' parameter"
                )
            await self._engine.load_model(request.model_name, config_json, files or None)
            return service_pb2.RepositoryModelLoadResponse()
        except Exception as error:
            await _abort(context, error)

    async def RepositoryModelUnload(self, request: Any, context: CallContext) -> Any:
        try:
            unload_dependents = False
            if _UNLOAD_DEPENDENTS in request.parameters:
                unload_dependents = bool(codec.parameter_value(request.parameters[_UNLOAD_DEPENDENTS]))
            await self._engine.unload_model(request.model_name, unload_dependents)
            return service_pb2.RepositoryModelUnloadResponse()
        except Exception as error:
            await _abort(context, error)

    async def TraceSetting(self, request: Any, context: CallContext) -> Any:
        """Triton's trace extension: no settings reads, some update; an empty value list sets a
        setting back to the global value (null in the HTTP form)."""
        try:
            changes: dict[str, Any] = {}
            for key, setting in request.settings.items():
                values = list(setting.value)
                if not values:
                    changes[key] = None
                else:
                    changes[key] = values if key == "trace_level" else values[0]
            if changes:
                current = self._engine.update_trace_setting(request.model_name, changes)
            else:
                current = self._engine.trace_setting(request.model_name)
            response = service_pb2.TraceSettingResponse()
            for key, value in current.items():
                response.settings[key].value.extend(value if isinstance(value, list) else [value])
            return response
        except Exception as error:
            await _abort(context, error)

    async def ModelInfer(self, request: Any, context: CallContext) -> Any:
        return await self._logged_infer(
            context, request.model_name, lambda: self._infer(request, self._forwarded(context)),
            lambda: _infer_detail(request),
        )  # fmt: skip

    async def model_infer_wire(self, payload: bytes, context: CallContext) -> bytes:
        """ModelInfer for the native transport, which hands over the request's bytes: a request
        laid out like one seen before skips protobuf both ways (codec_wire.py)."""
        plan = self._wire.plan_for(payload)
        if plan is not None:
            return await self._logged_infer(
                context, plan.model, lambda: self._infer_planned(plan, payload, context), plan.detail
            )
        try:
            message = service_pb2.ModelInferRequest.FromString(payload)
        except DecodeError as error:
            request_log.FAILED.failed("gRPC", "ModelInfer", error, status=400)
            await context.abort(grpc.StatusCode.INTERNAL, DESERIALIZE_FAILED)
        answer = await self._logged_infer(
            context, message.model_name, lambda: self._infer(message, self._forwarded(context), payload),
            lambda: _infer_detail(message),
        )  # fmt: skip
        return answer.SerializeToString()

    async def _logged_infer(
        self, context: CallContext, model: str, work: Callable[[], Awaitable[T]], detail: Callable[[], str]
    ) -> T:
        """One inference call: its errors leave through `_abort`, its success is logged at
        --log-verbose (with `detail` at 2)."""
        started = time.perf_counter() if request_log.verbosity() else 0.0
        try:
            answer = await work()
        except Exception as error:
            await _abort(context, error, f"ModelInfer {model}")
        if started:
            request_log.request_done("gRPC", f"ModelInfer {model}", 200, started, detail())
        return answer

    async def _infer_planned(self, plan: RequestPlan, payload: bytes, context: CallContext) -> bytes:
        request = plan.decode(payload)
        header_forward.merge(request.parameters, self._forwarded(context))
        return self._wire.encode(await self._engine.infer(request))

    @staticmethod
    def _forwarded(context: CallContext) -> dict[str, str]:
        if header_forward.grpc_enabled():  # --grpc-header-forward-pattern
            return header_forward.from_grpc(context.invocation_metadata())
        return {}

    async def _infer(
        self, request: Any, forwarded: dict[str, str], payload: bytes | None = None
    ) -> service_pb2.ModelInferResponse:
        shm = self._engine.shared_memory
        in_shm = codec.shm_outputs(request)
        decoded = codec.decode_infer_request(request, shm)
        if payload is not None and not in_shm:
            self._wire.learn(payload, request, decoded)  # before anything adds to its parameters
        header_forward.merge(decoded.parameters, forwarded)
        response = await self._engine.infer(decoded)
        return codec.encode_infer_response(response, in_shm, shm)

    # ---- system / CUDA shared memory ----------------------------------------------------------
    async def SystemSharedMemoryStatus(self, request: Any, context: CallContext) -> Any:
        try:
            answer = service_pb2.SystemSharedMemoryStatusResponse()
            for region in self._engine.shared_memory.status(request.name):
                entry = answer.regions[region.name]
                entry.name, entry.key = region.name, region.key
                entry.offset, entry.byte_size = region.offset, region.byte_size
            return answer
        except Exception as error:
            await _abort(context, error)

    async def SystemSharedMemoryRegister(self, request: Any, context: CallContext) -> Any:
        try:
            self._engine.shared_memory.register(request.name, request.key, request.offset, request.byte_size)
            return service_pb2.SystemSharedMemoryRegisterResponse()
        except Exception as error:
            await _abort(context, error)

    async def SystemSharedMemoryUnregister(self, request: Any, context: CallContext) -> Any:
        self._engine.shared_memory.unregister(request.name)
        return service_pb2.SystemSharedMemoryUnregisterResponse()

    async def CudaSharedMemoryStatus(self, request: Any, context: CallContext) -> Any:
        return service_pb2.CudaSharedMemoryStatusResponse()  # none can be registered

    async def CudaSharedMemoryRegister(self, request: Any, context: CallContext) -> Any:
        await _abort(context, UnsupportedError(CUDA_SHM_UNSUPPORTED))

    async def CudaSharedMemoryUnregister(self, request: Any, context: CallContext) -> Any:
        return service_pb2.CudaSharedMemoryUnregisterResponse()

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[Any], context: CallContext
    ) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        """Requests on one stream run concurrently; each answer is written when it is ready, so
        answers may come back in another order than asked (clients match them by `id`). A failed
        request answers with `error_message` and the stream stays open."""
        answers: asyncio.Queue[service_pb2.ModelStreamInferResponse | None] = asyncio.Queue()
        in_flight: set[asyncio.Task[None]] = set()

        forwarded = self._forwarded(context)

        async def answer(message: Any) -> None:
            answers.put_nowait(await self._stream_answer(message, forwarded))

        async def read_requests() -> None:
            try:
                async for message in request_iterator:
                    task = asyncio.create_task(answer(message))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                while in_flight:
                    await asyncio.wait(set(in_flight))
            finally:
                answers.put_nowait(None)

        reader = asyncio.create_task(read_requests())
        try:
            while (item := await answers.get()) is not None:
                yield item
            await reader  # surfaces a failure of the request stream itself
        finally:
            reader.cancel()
            for task in list(in_flight):
                task.cancel()

    async def _stream_answer(
        self, message: Any, forwarded: dict[str, str]
    ) -> service_pb2.ModelStreamInferResponse:
        try:
            response = await self._infer(message, forwarded)
        except Exception as error:
            request_log.FAILED.failed("gRPC", f"ModelStreamInfer {message.model_name}", error)
            header = service_pb2.ModelInferResponse(
                model_name=message.model_name, model_version=message.model_version, id=message.id
            )
            return service_pb2.ModelStreamInferResponse(error_message=_message(error), infer_response=header)
        parameters = message.parameters
        if _ENABLE_FINAL_FLAG in parameters and codec.parameter_value(parameters[_ENABLE_FINAL_FLAG]):
            # Not a decoupled model: this one response is also the last for its request.
            response.parameters[_FINAL_FLAG].bool_param = True
        return service_pb2.ModelStreamInferResponse(infer_response=response)
