"""The `postprocess` backend: numpy/OpenCV post-processing steps configured by parameters.

A model names one op in its config (`parameters { key: "op" value { string_value: "..." } }`);
the op's own parameters sit next to it. No model file is read: the version folder only holds
files that parameters name (dictionaries, label lists).

Threading: the model and its op are built on the loader thread; `execute` runs on each
instance's worker thread. Ops keep no per-call state, so instances share one op object.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2

from packserve.backends.base import (
    BackendInstance,
    BackendModel,
    BatchResult,
    ExecutionTimer,
    InstanceContext,
    ModelContext,
)
from packserve.backends.postprocess.classify import ClassifyOp, L2NormalizeOp
from packserve.backends.postprocess.detection import PriorBoxDecodeOp, RelativePointsOp, YoloDecodeOp
from packserve.backends.postprocess.op import OpContext, PostprocessOp
from packserve.backends.postprocess.text import CtcDecodeOp, DbTextBoxesOp, TextAngleFixOp, TextFilterOp
from packserve.errors import ConfigError, ModelExecutionError, PackserveError
from packserve.messages import InferRequest, Tensor, to_host

OPS: dict[str, type[PostprocessOp]] = {
    op.name: op
    for op in (
        ClassifyOp,
        L2NormalizeOp,
        PriorBoxDecodeOp,
        YoloDecodeOp,
        RelativePointsOp,
        DbTextBoxesOp,
        TextAngleFixOp,
        CtcDecodeOp,
        TextFilterOp,
    )
}


def build_op(context: OpContext) -> PostprocessOp:
    """The op a model's parameters name, checked against its config's inputs, outputs and batching."""
    spec = context.spec
    name = spec.parameters.get("op")
    if name is None:
        raise ConfigError(
            f"model '{spec.name}': the postprocess backend needs parameter 'op' ({', '.join(OPS)})"
        )
    op_class = OPS.get(name)
    if op_class is None:
        raise ConfigError(f"model '{spec.name}': unknown postprocess op '{name}' (known: {', '.join(OPS)})")
    if spec.batching and not op_class.row_wise:
        raise ConfigError(
            f"model '{spec.name}': op '{name}' returns a variable number of rows per image and needs "
            f"max_batch_size 0, got {spec.max_batch_size}"
        )
    known_inputs = set(op_class.inputs) | set(op_class.optional_inputs)
    for tensor in spec.inputs:
        if tensor.name not in known_inputs:
            raise ConfigError(
                f"model '{spec.name}': op '{name}' has no input '{tensor.name}' "
                f"(inputs: {sorted(known_inputs)})"
            )
    configured = {tensor.name for tensor in spec.inputs}
    missing = [input_name for input_name in op_class.inputs if input_name not in configured]
    if missing:
        raise ConfigError(f"model '{spec.name}': op '{name}' needs inputs {missing} in the config")
    for tensor in spec.outputs:
        if tensor.name not in op_class.outputs:
            raise ConfigError(
                f"model '{spec.name}': op '{name}' has no output '{tensor.name}' "
                f"(outputs: {list(op_class.outputs)})"
            )
    return op_class(context)


class PostprocessModel(BackendModel):
    default_model_filename = ""

    def __init__(self, context: ModelContext) -> None:
        super().__init__(context)
        self.op = build_op(OpContext(spec=context.spec, version_dir=context.version_dir))

    def create_instance(self, instance: InstanceContext) -> BackendInstance:
        return PostprocessInstance(self.op)


class PostprocessInstance(BackendInstance):
    """Runs the op request by request: each request is one image (or, for row-wise ops, one
    request's rows); numpy gains nothing from concatenating them."""

    def __init__(self, op: PostprocessOp) -> None:
        self.op = op
        self.spec = op.context.spec

    @property
    def may_run_inline(self) -> bool:
        return True  # numpy on the host

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        timer.inputs_ready()
        results: BatchResult = [self.run_one(request) for request in requests]
        timer.infer_done()
        return results

    def run_one(self, request: InferRequest) -> dict[str, Tensor] | PackserveError:
        try:
            inputs = {name: to_host(tensor) for name, tensor in request.inputs.items()}
            outputs = self.op.run(inputs)
        except PackserveError as error:
            return error
        except (ValueError, IndexError, TypeError, ArithmeticError, cv2.error) as error:
            # Numeric surprises inside numpy/OpenCV fail this request only, with the model named.
            return ModelExecutionError(f"model '{self.spec.name}' op '{self.op.name}' failed: {error}")
        wanted = (
            [tensor.name for tensor in self.spec.outputs]
            if request.outputs is None
            else [output.name for output in request.outputs]
        )
        return {name: outputs[name] for name in wanted if name in outputs}
