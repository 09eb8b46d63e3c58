"""Encode an `InferResponse` as a KServe v2 HTTP infer response: a JSON header, then the outputs
asked for as binary, in order (Triton's binary tensor data extension); outputs placed in system
shared memory are written there instead.

Runs on the event loop, once per answered infer request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from packserve.core.shared_memory import SharedMemoryRegistry
from packserve.frontends.http import tensor_data
from packserve.frontends.http.infer_decode import DecodedInfer
from packserve.messages import InferResponse, to_host
from packserve.types import DataType

# numpy dtype -> wire name of every fixed-size datatype: one lookup per output.
_FIXED_WIRE_NAMES = {t.numpy: t.wire_name for t in DataType if t is not DataType.BYTES}


@dataclass(slots=True)
class EncodedResponse:
    body: bytes
    header_length: int | None  # set when binary data follows the JSON header


def encode_infer(
    response: InferResponse, decoded: DecodedInfer, shm: SharedMemoryRegistry | None = None
) -> EncodedResponse:
    outputs_json: list[dict[str, Any]] = []
    shm_outputs = decoded.shm_outputs
    binary_parts: list[Any] = []
    binary_outputs = decoded.binary_outputs
    binary_default = decoded.binary_default
    for name, tensor in response.outputs.items():
        array = tensor if type(tensor) is np.ndarray else to_host(tensor)
        wire_name = _FIXED_WIRE_NAMES.get(array.dtype)
        if wire_name is None:  # BYTES, or a dtype the protocol has no name for (KeyError: a 500)
            wire_name = tensor_data.WIRE_NAME[DataType.from_numpy(array.dtype)]
        entry: dict[str, Any] = {"name": name, "datatype": wire_name, "shape": list(array.shape)}
        place = shm_outputs.get(name) if shm_outputs else None
        if place is not None and shm is not None:
            # As Triton: the data goes to the region, the response says only name, type, shape.
            payload = tensor_data.tensor_bytes(array)
            shm.write(place.region, place.offset, place.byte_size, payload, f"output '{name}'")
            outputs_json.append(entry)
            continue
        as_binary = binary_outputs.get(name, binary_default)
        if wire_name == "BYTES":
            elements = tensor_data.bytes_elements(array)
            text = None if as_binary else tensor_data.json_bytes_data(elements)
            if text is None:  # asked for binary, or not UTF-8 and so not representable in JSON
                payload = tensor_data.serialize_bytes(elements)
                entry["parameters"] = {"binary_data_size": len(payload)}
                binary_parts.append(payload)
            else:
                entry["data"] = text
        elif as_binary:
            contiguous = np.ascontiguousarray(array)
            entry["parameters"] = {"binary_data_size": contiguous.nbytes}
            binary_parts.append(contiguous.data.cast("B") if contiguous.nbytes else b"")
        else:
            entry["data"] = np.ascontiguousarray(array).reshape(-1)
        outputs_json.append(entry)
    head: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id:
        head["id"] = response.id
    if response.parameters:
        head["parameters"] = response.parameters
    head["outputs"] = outputs_json
    header = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY, default=_json_fallback)
    if not binary_parts:
        return EncodedResponse(header, None)
    return EncodedResponse(b"".join([header, *binary_parts]), len(header))


def _json_fallback(value: Any) -> Any:
    # orjson serializes numpy arrays natively except a few dtypes (e.g. non-contiguous); lists work.
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot serialize {type(value).__name__} to JSON")
