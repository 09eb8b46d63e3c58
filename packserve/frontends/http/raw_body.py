"""Raw binary request bodies: `Inference-Header-Content-Length: 0` means the whole body is the
model's one input, as Triton documents. Turned into the JSON header it stands for, so the usual
decoder checks it like any binary request."""

from __future__ import annotations

import orjson

from packserve.errors import InvalidArgumentError


def raw_binary_header(
    model: str, inputs: list[tuple[str, str, list[int]]], body_size: int, batching: bool
) -> bytes:
    """The JSON header a raw binary request (Inference-Header-Content-Length: 0) stands for: the
    whole body is the model's one input, shaped as its config says (batch 1 for a batching
    model), and every output comes back binary, as Triton documents. `inputs`: (name, datatype,
    metadata shape) of each model input."""
    if len(inputs) != 1:
        raise InvalidArgumentError(
            f"raw binary request (Inference-Header-Content-Length: 0) needs a model with exactly one "
            f"input; model '{model}' has {len(inputs)}"
        )
    name, datatype, shape = inputs[0]
    # The metadata shape starts with -1 for a batching model: a raw request is one row.
    shape = [1, *shape[1:]] if batching else list(shape)
    if -1 in shape:
        raise InvalidArgumentError(
            f"raw binary request to model '{model}': input '{name}' has a variable shape "
            f"{shape}; send a JSON header that gives its shape"
        )
    entry = {"name": name, "datatype": datatype, "shape": shape}
    header = {
        "inputs": [{**entry, "parameters": {"binary_data_size": body_size}}],
        "parameters": {"binary_data_output": True},
    }
    return orjson.dumps(header)
