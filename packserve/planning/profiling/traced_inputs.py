"""Real inputs for the models an ensemble calls: run the ensemble's steps one by one on a real image.

Random tensors shaped by the metadata are fine for a convolution but not for a post-processing step
that checks its inputs against each other (prior counts, boxes against an image) or a per-region
model whose cost depends on how many regions the detector found. Tracing one real request through
the ensemble gives every step the tensors it sees in serving, so its measured cost is the serving
cost. Models no ensemble reaches keep the metadata-shaped inputs of `make_inputs`.

Threading: runs on the profiler's event loop; the engine's instance threads do the work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from packserve.core.engine import Engine
from packserve.errors import InvalidArgumentError, PackserveError
from packserve.messages import InferRequest

Tensors = dict[str, Any]


async def trace_ensemble_inputs(engine: Engine, ensemble: str, inputs: Tensors) -> dict[str, Tensors]:
    """Inputs each model called (directly or through nested ensembles) by `ensemble` received for
    one request with these `inputs`; a model called twice keeps its first call's inputs."""
    recorded: dict[str, Tensors] = {}
    await _run_steps(engine, ensemble, inputs, recorded, ())
    return recorded


async def _run_steps(
    engine: Engine, ensemble: str, inputs: Tensors, recorded: dict[str, Tensors], seen: tuple[str, ...]
) -> Tensors:
    if ensemble in seen:
        raise InvalidArgumentError(f"ensemble '{ensemble}' contains itself through {' -> '.join(seen)}")
    spec = engine.model_spec(ensemble)
    tensors: Tensors = dict(inputs)
    pending = list(spec.ensemble_steps)
    while pending:
        ready = [s for s in pending if all(v in tensors for v in s.input_map.values())]
        if not ready:
            missing = sorted({v for s in pending for v in s.input_map.values() if v not in tensors})
            raise InvalidArgumentError(
                f"ensemble '{ensemble}': no step can run, tensors {', '.join(missing)} are never produced"
            )
        for step in ready:
            pending.remove(step)
            step_inputs = {name: tensors[source] for name, source in step.input_map.items()}
            recorded.setdefault(step.model_name, step_inputs)
            if engine.model_spec(step.model_name).is_ensemble:
                outputs = await _run_steps(engine, step.model_name, step_inputs, recorded, (*seen, ensemble))
            else:
                outputs = await _infer(engine, step.model_name, step_inputs)
            for name, target in step.output_map.items():
                if name not in outputs:
                    raise InvalidArgumentError(
                        f"ensemble '{ensemble}': model '{step.model_name}' returned no output '{name}'"
                    )
                tensors[target] = outputs[name]
    return tensors


async def _infer(engine: Engine, model: str, inputs: Tensors) -> Tensors:
    try:
        response = await engine.infer(InferRequest(model_name=model, inputs=dict(inputs)))
    except PackserveError as exc:
        raise InvalidArgumentError(
            f"tracing inputs: model '{model}' failed on a real request: {exc}"
        ) from exc
    return dict(response.outputs)


def batch_of(sample: Tensors, batch_size: int, batching: bool) -> Tensors:
    """One request of `batch_size` rows made from a traced one-row sample (rows repeated)."""
    if not batching:
        return dict(sample)
    batched: Tensors = {}
    for name, tensor in sample.items():
        rows = int(tensor.shape[0]) if len(tensor.shape) else 1
        if rows == batch_size:
            batched[name] = tensor
            continue
        first = tensor[:1]
        if hasattr(first, "repeat_interleave"):  # a torch tensor on the GPU path
            batched[name] = first.repeat_interleave(batch_size, dim=0)
        else:
            batched[name] = np.repeat(np.asarray(first), batch_size, axis=0)
    return batched
