"""Data-flow checks of an ensemble: its steps form a DAG over named ensemble tensors.

`check_ensemble_dataflow` needs only the ensemble's own spec and runs when the ensemble loads;
`validate_ensemble` adds the checks against the specs of the models its steps call, once those are
known (the repository runs it when the ensemble and all its step models have loaded).
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass

from packserve.errors import ConfigError
from packserve.model_spec import EnsembleStepSpec, ModelSpec, TensorSpec
from packserve.types import DataType


def _step_label(ensemble: ModelSpec, index: int, step: EnsembleStepSpec) -> str:
    return f"ensemble '{ensemble.name}' step {index} (model '{step.model_name}')"


def _names(names: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def check_ensemble_dataflow(ensemble: ModelSpec) -> None:
    """Every consumed tensor is produced once, no tensor is left dangling, and the steps form no cycle."""
    name = ensemble.name
    ensemble_inputs = {tensor.name for tensor in ensemble.inputs}
    producer: dict[str, int] = {}
    for index, step in enumerate(ensemble.ensemble_steps):
        for step_output, tensor in step.output_map.items():
            where = _step_label(ensemble, index, step)
            if tensor in ensemble_inputs:
                raise ConfigError(
                    f"{where} writes output '{step_output}' to ensemble tensor '{tensor}', "
                    "which is an ensemble input"
                )
            if tensor in producer:
                raise ConfigError(
                    f"{where} writes output '{step_output}' to ensemble tensor '{tensor}', "
                    f"already produced by step {producer[tensor]}"
                )
            producer[tensor] = index

    consumed: set[str] = set()
    for index, step in enumerate(ensemble.ensemble_steps):
        for step_input, tensor in step.input_map.items():
            if tensor not in producer and tensor not in ensemble_inputs:
                raise ConfigError(
                    f"{_step_label(ensemble, index, step)} reads input '{step_input}' from ensemble tensor "
                    f"'{tensor}', which is neither an ensemble input nor produced by any step"
                )
            consumed.add(tensor)

    ensemble_outputs = {tensor.name for tensor in ensemble.outputs}
    unproduced = sorted(ensemble_outputs - producer.keys())
    if unproduced:
        raise ConfigError(f"ensemble '{name}' output(s) {_names(unproduced)} not produced by any step")
    unused = sorted(ensemble_inputs - consumed)
    if unused:
        raise ConfigError(f"ensemble '{name}' input(s) {_names(unused)} not used by any step")
    dangling = sorted(producer.keys() - consumed - ensemble_outputs)
    if dangling:
        raise ConfigError(
            f"ensemble '{name}' tensor(s) {_names(dangling)} produced by a step but neither read by "
            "another step nor an ensemble output"
        )
    _check_acyclic(ensemble, producer)


def _check_acyclic(ensemble: ModelSpec, producer: Mapping[str, int]) -> None:
    steps = ensemble.ensemble_steps
    depends_on = [
        {producer[tensor] for tensor in step.input_map.values() if tensor in producer} for step in steps
    ]
    try:
        graphlib.TopologicalSorter(dict(enumerate(depends_on))).prepare()
    except graphlib.CycleError as exc:
        # args[1] is the cycle found, its first step repeated at the end.
        in_cycle = sorted(set(exc.args[1]))
        involved = ", ".join(f"step {index} (model '{steps[index].model_name}')" for index in in_cycle)
        raise ConfigError(f"ensemble '{ensemble.name}' has a cycle among its steps: {involved}") from None


@dataclass(frozen=True, slots=True)
class _TensorEnd:
    """One side of an ensemble tensor: who writes or reads it, with the type and full shape it has."""

    description: str
    datatype: DataType
    shape: tuple[int, ...]  # batch dimension included (as -1) for batching models


def _end(description: str, tensor: TensorSpec, batching: bool) -> _TensorEnd:
    shape = ((-1,) if batching else ()) + tensor.dims
    return _TensorEnd(description, tensor.datatype, shape)


def _shapes_compatible(first: tuple[int, ...], second: tuple[int, ...]) -> bool:
    return len(first) == len(second) and all(
        a == b or -1 in (a, b) for a, b in zip(first, second, strict=True)
    )


def validate_ensemble(ensemble: ModelSpec, models: Mapping[str, ModelSpec]) -> None:
    """Check an ensemble against the specs of the models its steps call (by model name)."""
    check_ensemble_dataflow(ensemble)
    writers: dict[str, _TensorEnd] = {
        tensor.name: _end(
            f"ensemble '{ensemble.name}' input '{tensor.name}'", tensor, ensemble.batching
        )
        for tensor in ensemble.inputs
    }
    readers: list[tuple[str, _TensorEnd]] = [
        (
            tensor.name,
            _end(f"ensemble '{ensemble.name}' output '{tensor.name}'", tensor, ensemble.batching),
        )
        for tensor in ensemble.outputs
    ]
    for index, step in enumerate(ensemble.ensemble_steps):
        where = _step_label(ensemble, index, step)
        model = _step_model(ensemble, index, step, models)
        for step_input, tensor_name in step.input_map.items():
            spec = model.input(step_input)
            if spec is None:
                known = ", ".join(t.name for t in model.inputs)
                raise ConfigError(
                    f"{where}: model '{model.name}' has no input '{step_input}' (inputs: {known})"
                )
            readers.append((tensor_name, _end(f"{where} input '{step_input}'", spec, model.batching)))
        for required in model.inputs:
            if not required.optional and required.name not in step.input_map:
                raise ConfigError(f"{where}: required input '{required.name}' is not in the step's input_map")
        for step_output, tensor_name in step.output_map.items():
            spec = model.output(step_output)
            if spec is None:
                known = ", ".join(t.name for t in model.outputs)
                raise ConfigError(
                    f"{where}: model '{model.name}' has no output '{step_output}' (outputs: {known})"
                )
            writers[tensor_name] = _end(f"{where} output '{step_output}'", spec, model.batching)

    for tensor_name, reader in readers:
        writer = writers[tensor_name]  # present: check_ensemble_dataflow proved every tensor is written
        if writer.datatype is not reader.datatype:
            raise ConfigError(
                f"ensemble tensor '{tensor_name}': {writer.description} is {writer.datatype.config_name} "
                f"but {reader.description} expects {reader.datatype.config_name}"
            )
        if not _shapes_compatible(writer.shape, reader.shape):
            raise ConfigError(
                f"ensemble tensor '{tensor_name}': {writer.description} has shape {list(writer.shape)} "
                f"but {reader.description} expects {list(reader.shape)} (batch dimension included)"
            )


def _step_model(
    ensemble: ModelSpec, index: int, step: EnsembleStepSpec, models: Mapping[str, ModelSpec]
) -> ModelSpec:
    where = _step_label(ensemble, index, step)
    if step.model_name == ensemble.name:
        raise ConfigError(f"{where} calls the ensemble itself")
    model = models.get(step.model_name)
    if model is None:
        raise ConfigError(f"{where}: unknown model '{step.model_name}'")
    if ensemble.max_batch_size > model.max_batch_size:
        raise ConfigError(
            f"{where}: ensemble max_batch_size {ensemble.max_batch_size} is above the step model's "
            f"max_batch_size {model.max_batch_size}"
        )
    return model
