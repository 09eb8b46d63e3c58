"""The `triton_python_backend_utils` module that Triton python-backend models import.

Installed into `sys.modules` under that name by the python backend, so a model.py written for
Triton (`import triton_python_backend_utils as pb_utils`) runs here unmodified, in-process. The
names, signatures and error texts follow Triton's module; only what a model can observe matters.
Objects here are created and used on the owning instance's worker thread.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from packserve.types import DataType

_log = logging.getLogger("packserve.python_model")

TRITON_STRING_TO_NUMPY: dict[str, Any] = {t.config_name: t.numpy.type for t in DataType}
TRITON_STRING_TO_NUMPY["TYPE_BOOL"] = bool

# model_config.proto DataType numbers, as Triton's Tensor.triton_dtype() reports them.
_TRITON_TYPE_NUMBERS: dict[DataType, int] = {
    DataType.BOOL: 1,
    DataType.UINT8: 2,
    DataType.UINT16: 3,
    DataType.UINT32: 4,
    DataType.UINT64: 5,
    DataType.INT8: 6,
    DataType.INT16: 7,
    DataType.INT32: 8,
    DataType.INT64: 9,
    DataType.FP16: 10,
    DataType.FP32: 11,
    DataType.FP64: 12,
    DataType.BYTES: 13,
}
_TYPES_BY_NUMBER = {number: datatype for datatype, number in _TRITON_TYPE_NUMBERS.items()}

TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2


class TritonError:
    """An error a model attaches to one response; fails that request only."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self._message = message
        self._code = code

    def __str__(self) -> str:
        return self._message

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class TritonModelException(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message

    def message(self) -> str:
        return self._message


def triton_to_numpy_type(data_type: int) -> Any:
    datatype = _TYPES_BY_NUMBER.get(data_type)
    return None if datatype is None else datatype.numpy.type


def numpy_to_triton_type(data_type: Any) -> int | None:
    try:
        return _TRITON_TYPE_NUMBERS[DataType.from_numpy(np.dtype(data_type))]
    except (KeyError, TypeError):
        return None


def triton_string_to_numpy(triton_type_string: str) -> Any:
    return TRITON_STRING_TO_NUMPY[triton_type_string]


class Tensor:
    """A named tensor: a numpy array, or a framework tensor (e.g. torch on a GPU) via DLPack."""

    def __init__(self, name: str, numpy_array: Any, triton_dtype: int | None = None) -> None:
        if isinstance(numpy_array, np.ndarray):
            if numpy_array.dtype.type in (np.str_, np.void):
                raise TritonModelException(
                    "Tensor dtype used for numpy_array is not supported by Python backend. "
                    "Please use np.object_ instead."
                )
            if triton_dtype is not None:
                wanted = triton_to_numpy_type(triton_dtype)
                if wanted is not None and numpy_array.dtype != wanted:
                    numpy_array = numpy_array.view(wanted)
        self._name = name
        self._value = numpy_array

    @classmethod
    def from_dlpack(cls, name: str, capsule: Any) -> Tensor:
        """A tensor sharing memory with any DLPack producer (an object with `__dlpack__` or a
        capsule). Host memory becomes a numpy array; device memory stays a torch tensor."""
        if hasattr(capsule, "__dlpack_device__"):
            device_type = capsule.__dlpack_device__()[0]
            if device_type == 1:  # kDLCPU
                return cls(name, np.from_dlpack(capsule))
        try:
            import torch.utils.dlpack
        except ImportError:
            raise TritonModelException(
                "Tensor.from_dlpack: only host tensors are supported without torch installed"
            ) from None
        value = capsule if isinstance(capsule, torch.Tensor) else torch.utils.dlpack.from_dlpack(capsule)
        return cls(name, value.numpy() if value.device.type == "cpu" else value)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        if isinstance(self._value, np.ndarray):
            return self._value
        if not self.is_cpu():
            raise TritonModelException(
                f"tensor '{self._name}' is in GPU memory; use to_dlpack() instead of as_numpy()"
            )
        return np.asarray(self._value)

    def to_dlpack(self) -> Any:
        if isinstance(self._value, np.ndarray) and self._value.dtype == np.object_:
            raise TritonModelException(f"tensor '{self._name}': BYTES tensors cannot be exported with DLPack")
        return self._value.__dlpack__()

    def is_cpu(self) -> bool:
        if isinstance(self._value, np.ndarray):
            return True
        device = getattr(self._value, "device", None)
        return device is None or getattr(device, "type", "cpu") == "cpu"

    def shape(self) -> list[int]:
        return list(self._value.shape)

    def triton_dtype(self) -> int | None:
        dtype = self._value.dtype
        if isinstance(dtype, np.dtype):
            return numpy_to_triton_type(dtype)
        return numpy_to_triton_type(np.dtype(str(dtype).replace("torch.", "")))

    def data(self) -> Any:
        """The underlying array or framework tensor (packserve extension, no copy)."""
        return self._value


class InferenceRequest:
    """A request the model receives in `execute`, or a BLS request it builds itself."""

    def __init__(
        self,
        model_name: str = "",
        requested_output_names: Sequence[str] = (),
        inputs: Sequence[Tensor] = (),
        request_id: str = "",
        correlation_id: int | str = 0,
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        parameters: str | dict[str, Any] | None = None,
        **_ignored: Any,  # preferred_memory, trace: meaningful only to Triton's shared-memory IPC
    ) -> None:
        self._model_name = model_name
        self._requested_output_names = list(requested_output_names)
        self._inputs = list(inputs)
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._model_version = model_version
        self._flags = flags
        self._timeout = timeout
        self._parameters = parameters if isinstance(parameters, str) else json.dumps(parameters or {})

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._requested_output_names

    def request_id(self) -> str:
        return self._request_id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def model_name(self) -> str:
        return self._model_name

    def model_version(self) -> int:
        return self._model_version

    def flags(self) -> int:
        return self._flags

    def timeout(self) -> int:
        return self._timeout

    def parameters(self) -> str:
        return self._parameters

    def is_cancelled(self) -> bool:
        return False

    def get_response_sender(self) -> Any:
        raise TritonModelException("decoupled models (response senders) are not supported by packserve")

    def exec(self, decoupled: bool = False) -> InferenceResponse:
        """Run this request on the model it names (BLS); the callee's failure is the response's
        error(). Call it from within execute()."""
        from packserve.backends.python import bls

        return bls.run(self, decoupled)

    async def async_exec(self, decoupled: bool = False) -> InferenceResponse:
        """`exec()` as an awaitable, for `async def execute` and asyncio.gather of several calls."""
        from packserve.backends.python import bls

        return await bls.run_async(self, decoupled)


class InferenceResponse:
    def __init__(
        self,
        output_tensors: Sequence[Tensor] | None = None,
        error: TritonError | None = None,
        parameters: str | dict[str, Any] | None = None,
    ) -> None:
        if output_tensors is not None and not isinstance(output_tensors, list | tuple):
            raise TritonModelException('"output_tensors" must be a list.')
        self._output_tensors = list(output_tensors or [])
        self._error = error
        self._parameters = parameters if isinstance(parameters, str) else json.dumps(parameters or {})

    def output_tensors(self) -> list[Tensor]:
        return self._output_tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        return self._parameters


def get_input_tensor_by_name(inference_request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in inference_request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(inference_response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in inference_response.output_tensors() if t.name() == name), None)


def get_input_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in model_config.get("input", []) if t["name"] == name), None)


def get_output_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in model_config.get("output", []) if t["name"] == name), None)


def using_decoupled_model_transaction_policy(model_config: dict[str, Any]) -> bool:
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


def serialize_byte_tensor(input_tensor: np.ndarray) -> bytes | None:
    """BYTES elements as 4-byte little-endian length + content, in C order."""
    if input_tensor.size == 0:
        return b""
    if input_tensor.dtype != np.object_ and input_tensor.dtype.type != np.bytes_:
        return None
    parts = []
    for item in input_tensor.flat:
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def deserialize_bytes_tensor(encoded_tensor: bytes) -> np.ndarray:
    items = []
    offset = 0
    while offset < len(encoded_tensor):
        (length,) = struct.unpack_from("<I", encoded_tensor, offset)
        offset += 4
        items.append(bytes(encoded_tensor[offset : offset + length]))
        offset += length
    return np.array(items, dtype=np.object_)


class Logger:
    """Triton's model logger, writing to Python logging ("packserve.python_model")."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    VERBOSE = 3

    @staticmethod
    def log(message: str, level: int = INFO) -> None:
        python_level = {0: logging.INFO, 1: logging.WARNING, 2: logging.ERROR, 3: logging.DEBUG}.get(
            level, logging.INFO
        )
        _log.log(python_level, "%s", message)

    @staticmethod
    def log_info(message: str) -> None:
        _log.info("%s", message)

    @staticmethod
    def log_warn(message: str) -> None:
        _log.warning("%s", message)

    @staticmethod
    def log_error(message: str) -> None:
        _log.error("%s", message)

    @staticmethod
    def log_verbose(message: str) -> None:
        _log.debug("%s", message)


from packserve.backends.python.autocomplete import ModelConfig  # noqa: E402 - part of this module's API

__all__ = [
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_END",
    "TRITONSERVER_REQUEST_FLAG_SEQUENCE_START",
    "TRITONSERVER_REQUEST_RELEASE_ALL",
    "TRITONSERVER_REQUEST_RELEASE_RESCHEDULE",
    "TRITONSERVER_RESPONSE_COMPLETE_FINAL",
    "TRITON_STRING_TO_NUMPY",
    "InferenceRequest",
    "InferenceResponse",
    "Logger",
    "ModelConfig",
    "Tensor",
    "TritonError",
    "TritonModelException",
    "deserialize_bytes_tensor",
    "get_input_config_by_name",
    "get_input_tensor_by_name",
    "get_output_config_by_name",
    "get_output_tensor_by_name",
    "numpy_to_triton_type",
    "serialize_byte_tensor",
    "triton_string_to_numpy",
    "triton_to_numpy_type",
    "using_decoupled_model_transaction_policy",
]
