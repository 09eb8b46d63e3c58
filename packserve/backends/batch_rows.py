"""Gathering a batch's inputs into one tensor per name and splitting outputs back by rows.

Shared by the backends that run a whole batch in one call (onnxruntime, pytorch). Called on an
instance's worker thread; nothing here keeps state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from packserve.messages import InferRequest, Tensor
from packserve.model_spec import ModelSpec


def request_rows(requests: Sequence[InferRequest], batching: bool) -> list[int]:
    """Rows each request contributes to the batch (1 each for models that do not batch)."""
    return [request.batch_size(batching) for request in requests]


def same_row_shapes(requests: Sequence[InferRequest]) -> bool:
    """True when every request has the same inputs with the same shape after the batch dimension,
    so that their inputs can be stacked along the batch dimension."""
    first = requests[0].inputs
    for request in requests[1:]:
        if request.inputs.keys() != first.keys():
            return False
        for name, tensor in request.inputs.items():
            if tuple(tensor.shape[1:]) != tuple(first[name].shape[1:]):
                return False
    return True


def gather_inputs(
    requests: Sequence[InferRequest], concat: Callable[[list[Tensor]], Tensor]
) -> dict[str, Tensor]:
    """One tensor per input name holding every request's rows in order. A lone request's tensors
    are passed through untouched (no copy)."""
    if len(requests) == 1:
        return dict(requests[0].inputs)
    names = requests[0].inputs.keys()
    return {name: concat([request.inputs[name] for request in requests]) for name in names}


def split_rows(tensor: Tensor, rows: Sequence[int]) -> list[Tensor]:
    """Slices of `tensor` along its first dimension, one per request (views, not copies)."""
    if len(rows) == 1:
        return [tensor]
    parts = []
    start = 0
    for count in rows:
        parts.append(tensor[start : start + count])
        start += count
    return parts


def output_names_for(request: InferRequest, spec: ModelSpec) -> list[str]:
    """The outputs this request asked for; every configured output when it named none."""
    if request.outputs is None:
        return [output.name for output in spec.outputs]
    return [output.name for output in request.outputs]


def union_output_names(requests: Sequence[InferRequest], spec: ModelSpec) -> list[str]:
    """Outputs any request of the batch needs, in config order, so the model computes only those."""
    wanted: set[str] = set()
    for request in requests:
        if request.outputs is None:
            return [output.name for output in spec.outputs]
        wanted.update(output.name for output in request.outputs)
    ordered = [output.name for output in spec.outputs if output.name in wanted]
    # Names outside the config (a graph output the config leaves out) keep the request's order.
    ordered.extend(sorted(wanted.difference(ordered)))
    return ordered
