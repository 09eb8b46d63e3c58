"""Ensemble scheduling: run a DAG of steps, each an ordinary request to its model.

A step starts as soon as its inputs exist, independent steps run concurrently, and each step goes
through its model's own scheduler, so it is batched with every other request to that model.
Tensors pass between steps by reference (the same numpy array or torch tensor object): nothing is
serialised or copied to the host. Steps whose outputs nobody asked for are not run.

Threading: everything here runs on the event loop; the steps' models execute on their own workers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from packserve.core.composite import CompositeScheduler
from packserve.errors import PackserveError
from packserve.messages import InferRequest, RequestedOutput, Tensor
from packserve.model_spec import EnsembleStepSpec


def steps_needed(steps: Iterable[EnsembleStepSpec], wanted: Iterable[str]) -> list[int]:
    """Indices of the steps that (transitively) produce the wanted ensemble tensors, in config order."""
    steps = list(steps)
    producer = {ens: index for index, step in enumerate(steps) for ens in step.output_map.values()}
    needed: set[int] = set()
    frontier = [name for name in wanted if name in producer]
    while frontier:
        index = producer[frontier.pop()]
        if index in needed:
            continue
        needed.add(index)
        frontier.extend(name for name in steps[index].input_map.values() if name in producer)
    return sorted(needed)


class EnsembleScheduler(CompositeScheduler):
    """The scheduler of a `platform: "ensemble"` model."""

    async def _run(self, request: InferRequest) -> dict[str, Tensor]:
        timing = request.timing
        timing.queue_start_ns = timing.compute_start_ns = self._clock.now_ns()
        wanted = (
            [out.name for out in request.outputs] if request.outputs else [o.name for o in self._spec.outputs]
        )
        steps = self._spec.ensemble_steps
        todo = steps_needed(steps, wanted)
        # Ensemble tensors a step must hand on: those wanted by the client or read by a later step.
        consumed = set(wanted)
        for index in todo:
            consumed.update(steps[index].input_map.values())

        tensors: dict[str, Tensor] = dict(request.inputs)
        running: dict[asyncio.Task[dict[str, Tensor]], int] = {}
        try:
            while todo or running:
                for index in [i for i in todo if all(n in tensors for n in steps[i].input_map.values())]:
                    todo.remove(index)
                    task = asyncio.ensure_future(self._run_step(request, steps[index], tensors, consumed))
                    running[task] = index
                if not running:
                    missing = sorted({n for i in todo for n in steps[i].input_map.values()} - set(tensors))
                    raise PackserveError(
                        f"ensemble '{self._spec.name}': tensors {missing} are never produced"
                    )
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.pop(task)
                    tensors.update(task.result())
        finally:
            for task in running:
                task.cancel()
        end = self._clock.now_ns()
        timing.compute_input_end_ns = timing.compute_start_ns
        timing.compute_infer_end_ns = timing.compute_end_ns = end
        timing.batch_size = request.batch_size(self._spec.batching)
        return {name: tensors[name] for name in wanted}

    async def _run_step(
        self,
        parent: InferRequest,
        step: EnsembleStepSpec,
        tensors: dict[str, Tensor],
        consumed: set[str],
    ) -> dict[str, Tensor]:
        outputs = [RequestedOutput(name) for name, ens in step.output_map.items() if ens in consumed]
        sub_request = InferRequest(
            model_name=step.model_name,
            model_version=str(step.model_version) if step.model_version >= 0 else "",
            inputs={name: tensors[ens] for name, ens in step.input_map.items()},
            outputs=outputs,
            id=parent.id,
            priority=parent.priority,
            parameters=parent.parameters,
            origin_ns=parent.admitted_ns(),
        )
        try:
            response = await self._dispatcher.infer(sub_request)
        except PackserveError as exc:
            # Same error class (so the status code stays right), with the step named.
            raise type(exc)(f"in ensemble '{self._spec.name}', step '{step.model_name}': {exc}") from exc
        return {step.output_map[name]: tensor for name, tensor in response.outputs.items()}
