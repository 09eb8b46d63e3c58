"""`POST /v2/pipelines/{model}`: packserve's convenience route for curl users.

The body is one raw encoded image (`image/jpeg`, `image/png`, ...), sent to the model's single
BYTES input; the answer is one JSON document with every output as plain JSON values (BYTES outputs
as UTF-8 strings). The KServe v2 infer route stays the protocol; this route only saves clients from
building a BYTES tensor. Runs on the event loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from packserve.core.engine_api import EngineApi
from packserve.errors import InvalidArgumentError
from packserve.messages import InferRequest, to_host
from packserve.types import DataType

JSON = b"application/json"


def _json_value(array: np.ndarray) -> Any:
    if array.dtype == np.object_:
        flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


async def infer_raw_image(engine: EngineApi, model: str, version: str, body: bytes) -> bytes:
    """Run `model` on one encoded image and return the JSON answer's bytes."""
    if not body:
        raise InvalidArgumentError(
            f"pipeline '{model}': the request body must be an encoded image, got 0 bytes"
        )
    metadata = engine.model_metadata(model, version)
    byte_inputs = [t for t in metadata.inputs if t.datatype is DataType.BYTES]
    if len(metadata.inputs) != 1 or len(byte_inputs) != 1:
        raise InvalidArgumentError(
            f"pipeline '{model}' needs exactly one BYTES input to take a raw image, "
            f"it has inputs {[f'{t.name}:{t.datatype.wire_name}' for t in metadata.inputs]}"
        )
    image_input = byte_inputs[0]
    # One image: every variable (or batch) dimension is 1.
    shape = tuple(1 if d < 0 else d for d in image_input.shape)
    if int(np.prod(shape)) != 1:
        raise InvalidArgumentError(
            f"pipeline '{model}' input '{image_input.name}' has shape {list(image_input.shape)}, "
            "which holds more than one image"
        )
    tensor = np.empty(shape, dtype=object)
    tensor.reshape(-1)[0] = body
    response = await engine.infer(InferRequest(model, {image_input.name: tensor}, model_version=version))
    document = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": {name: _json_value(to_host(value)) for name, value in response.outputs.items()},
    }
    return orjson.dumps(document)
