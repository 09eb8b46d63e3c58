"""Tensor data types of the KServe v2 / Triton protocol and their numpy equivalents, and the base
of the enums whose members are the protocol's own words.

One table serves the wire codecs, the config (``TYPE_FP32`` names) and the backends.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class WireName(str, enum.Enum):
    """An enum of the protocol's own words ("READY", "KIND_GPU"): each member is that string,
    so it compares, hashes, prints and serialises (JSON, protobuf) exactly as the bare string did.
    `str(enum.StrEnum)` would do the same but needs Python 3.11."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(str.__str__(self), format_spec)


@dataclass(frozen=True, slots=True)
class _TypeInfo:
    wire_name: str  # KServe v2 name: "FP32"
    config_name: str  # model_config.proto name: "TYPE_FP32"
    numpy: np.dtype  # object dtype for BYTES
    byte_size: int  # 0 for BYTES (variable)


class DataType(enum.Enum):
    BOOL = _TypeInfo("BOOL", "TYPE_BOOL", np.dtype(np.bool_), 1)
    UINT8 = _TypeInfo("UINT8", "TYPE_UINT8", np.dtype(np.uint8), 1)
    UINT16 = _TypeInfo("UINT16", "TYPE_UINT16", np.dtype(np.uint16), 2)
    UINT32 = _TypeInfo("UINT32", "TYPE_UINT32", np.dtype(np.uint32), 4)
    UINT64 = _TypeInfo("UINT64", "TYPE_UINT64", np.dtype(np.uint64), 8)
    INT8 = _TypeInfo("INT8", "TYPE_INT8", np.dtype(np.int8), 1)
    INT16 = _TypeInfo("INT16", "TYPE_INT16", np.dtype(np.int16), 2)
    INT32 = _TypeInfo("INT32", "TYPE_INT32", np.dtype(np.int32), 4)
    INT64 = _TypeInfo("INT64", "TYPE_INT64", np.dtype(np.int64), 8)
    FP16 = _TypeInfo("FP16", "TYPE_FP16", np.dtype(np.float16), 2)
    FP32 = _TypeInfo("FP32", "TYPE_FP32", np.dtype(np.float32), 4)
    FP64 = _TypeInfo("FP64", "TYPE_FP64", np.dtype(np.float64), 8)
    BYTES = _TypeInfo("BYTES", "TYPE_STRING", np.dtype(np.object_), 0)

    @property
    def wire_name(self) -> str:
        return self.value.wire_name

    @property
    def config_name(self) -> str:
        return self.value.config_name

    @property
    def numpy(self) -> np.dtype:
        return self.value.numpy

    @property
    def byte_size(self) -> int:
        """Bytes per element; 0 for BYTES, whose elements vary in length."""
        return self.value.byte_size

    @classmethod
    def from_wire(cls, name: str) -> DataType:
        """KServe v2 datatype name -> DataType; KeyError for an unknown name."""
        return _BY_WIRE[name]

    @classmethod
    def from_config(cls, name: str) -> DataType:
        """model_config.proto enum name ("TYPE_FP32") -> DataType; KeyError if unknown."""
        return _BY_CONFIG[name]

    @classmethod
    def from_numpy(cls, dtype: np.dtype) -> DataType:
        """numpy dtype -> DataType. Byte strings and unicode map to BYTES."""
        if dtype.kind in ("O", "S", "U"):
            return cls.BYTES
        return _BY_NUMPY[np.dtype(dtype)]


_BY_WIRE = {t.wire_name: t for t in DataType}
_BY_CONFIG = {t.config_name: t for t in DataType}
_BY_NUMPY = {t.numpy: t for t in DataType if t is not DataType.BYTES}
