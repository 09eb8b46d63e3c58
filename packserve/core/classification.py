"""Which outputs a response carries, and Triton's classification extension: an output asked for
with `class_count` comes back as the top classes of each batch row, as BYTES strings "score:index"
or "score:index:label".

Triton formats the score with C++ `std::to_string`: "%f" (six decimals) for float outputs and a
plain integer for integer outputs, so tritonclient users see the same text from packserve.
Runs wherever the response is assembled (the engine, on the event-loop thread).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from packserve.errors import InvalidArgumentError, ModelExecutionError
from packserve.messages import RequestedOutput, Tensor, to_host
from packserve.model_spec import ModelSpec


def shape_outputs(
    spec: ModelSpec, requested: Sequence[RequestedOutput] | None, outputs: dict[str, Tensor]
) -> dict[str, Tensor]:
    """The outputs asked for, in the order asked, classified where a class_count was given; every
    output of the spec that was produced, in the spec's order, when none was named."""
    if requested is None:
        return {t.name: outputs[t.name] for t in spec.outputs if t.name in outputs}
    shaped: dict[str, Tensor] = {}
    for wanted in requested:
        tensor = outputs.get(wanted.name)
        if tensor is None:
            raise ModelExecutionError(f"model '{spec.name}' did not produce output '{wanted.name}'")
        if wanted.class_count > 0:
            out_spec = spec.output(wanted.name)
            labels = out_spec.labels if out_spec is not None else ()
            tensor = classify(to_host(tensor), wanted.class_count, labels, spec.batching)
        shaped[wanted.name] = tensor
    return shaped


def classify(output: np.ndarray, class_count: int, labels: tuple[str, ...], batching: bool) -> np.ndarray:
    """Top `class_count` classes per batch row, by score descending (lower index first on ties).

    Each row's scores are all the elements of that row, flattened (Triton ignores the row's
    shape). Returns an object array of bytes shaped [batch, k] (or [k] when not batching), where
    k = min(class_count, elements per row).
    """
    if class_count < 1:
        raise InvalidArgumentError(f"class_count must be at least 1, got {class_count}")
    kind = output.dtype.kind
    if kind not in "iuf" or output.dtype == np.float16:
        raise InvalidArgumentError(
            f"class result not available for output due to unsupported type '{output.dtype}'"
        )
    rows = output.reshape(output.shape[0], -1) if batching else output.reshape(1, -1)
    count = min(class_count, rows.shape[1])
    # A stable sort of the negated scores: descending, ties keep index order.
    order = np.argsort(_descending_key(rows), axis=1, kind="stable")
    top = order[:, :count]
    result = np.empty((rows.shape[0], count), dtype=np.object_)
    as_float = kind == "f"
    for r in range(rows.shape[0]):
        row = rows[r]
        for k in range(count):
            index = int(top[r, k])
            score = row[index]
            text = f"{float(score):f}:{index}" if as_float else f"{int(score)}:{index}"
            if index < len(labels) and labels[index]:
                text += ":" + labels[index]
            result[r, k] = text.encode()
    return result if batching else result[0]


def _descending_key(rows: np.ndarray) -> np.ndarray:
    """Keys whose ascending order is the scores' descending order, without overflow."""
    if rows.dtype.kind == "f":
        return -rows.astype(np.float64)
    if rows.dtype == np.uint64:
        # Negating uint64 would wrap; Python integers (object array) cannot overflow.
        return -rows.astype(np.object_)
    return -rows.astype(np.int64)
