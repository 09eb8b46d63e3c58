"""What a python model's responses mean to the server, shared by the in-process and the isolated
instances so both answer a client the same way."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from packserve.backends.python import pb_utils
from packserve.errors import (
    InvalidArgumentError,
    ModelExecutionError,
    NotFoundError,
    PackserveError,
    UnavailableError,
)
from packserve.messages import InferRequest, Tensor

# TritonError codes -> the error type the client sees.
ERROR_TYPES: dict[int, type[PackserveError]] = {
    pb_utils.TritonError.INVALID_ARG: InvalidArgumentError,
    pb_utils.TritonError.NOT_FOUND: NotFoundError,
    pb_utils.TritonError.UNAVAILABLE: UnavailableError,
}


def pb_request_parameters(request: InferRequest) -> str:
    # Most requests carry none: skip the encoder on the hot path.
    return json.dumps(request.parameters, default=str) if request.parameters else "{}"


def response_outputs(
    model_name: str,
    error: tuple[int, str] | None,
    produced: Mapping[str, Any],
    names: Sequence[str],
) -> dict[str, Tensor] | PackserveError:
    """The outputs a request asked for out of what its response produced, or its error."""
    if error is not None:
        code, message = error
        return ERROR_TYPES.get(code, ModelExecutionError)(message)
    outputs: dict[str, Tensor] = {}
    for name in names:
        if name not in produced:
            return ModelExecutionError(
                f"model '{model_name}': the response has no output '{name}' that the request asked for"
            )
        value = produced[name]
        # Fixed-width byte strings become the object arrays of bytes the front ends expect.
        if isinstance(value, np.ndarray) and value.dtype.kind == "S":
            value = value.astype(np.object_)
        outputs[name] = value
    return outputs
