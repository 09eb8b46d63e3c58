"""The instances of one model version, each with its own worker thread: the "doing" half of
scheduling.

Threading: `start`, `run`, `free_count` and the completion callbacks run on the event-loop thread;
`BackendInstance.execute` runs on the instance's own worker thread, one batch at a time. While a
batch executes, its requests (and their timing records) belong to that worker thread; they come
back to the loop thread through `loop.call_soon_threadsafe`. The exception: when every instance
may run inline and the model has proven cheap (see inline_policy), batches execute on the loop
thread itself, in a callback of their own, still one batch per instance at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from packserve.backends.base import BackendInstance, BatchResult, ExecutionTimer
from packserve.core.clock import MONOTONIC_CLOCK, Clock
from packserve.core.cpu_slots import CpuSlots
from packserve.core.execution_watchdog import ExecutionWatchdog
from packserve.core.inline_policy import InlineExecutionPolicy
from packserve.errors import ExecutionTimeoutError, ModelExecutionError, PackserveError, UnavailableError
from packserve.messages import InferRequest


@dataclass(slots=True)
class ExecutionOutcome:
    """What one execution produced, delivered on the loop thread."""

    # One entry per request, in order: its outputs, or the PackserveError that fails it.
    results: BatchResult
    rows: int  # batch size of the execution
    raised: bool  # the backend raised: every request failed with the same error
    instance_index: int
    cpu_ns: int = 0  # CPU time of the worker thread that ran it (0 when run inline)


log = logging.getLogger(__name__)

DoneCallback = Callable[[ExecutionOutcome], None]


class _BatchTimer(ExecutionTimer):
    """Writes one execution's phase boundaries into the timing record of each of its requests."""

    __slots__ = ("_clock", "_infer_end_ns", "_input_end_ns", "_requests")

    def __init__(self, requests: Sequence[InferRequest], clock: Clock) -> None:
        self._requests = requests
        self._clock = clock
        self._input_end_ns = 0
        self._infer_end_ns = 0

    def inputs_ready(self) -> None:
        self._input_end_ns = self._clock.now_ns()

    def infer_done(self) -> None:
        self._infer_end_ns = self._clock.now_ns()

    def finish(self, start_ns: int, rows: int) -> None:
        end_ns = self._clock.now_ns()
        # A backend that marks no phases gets its whole run counted as inference, so the three
        # compute phases still add up to the execution time.
        input_end = self._input_end_ns or start_ns
        infer_end = self._infer_end_ns or end_ns
        infer_end = max(infer_end, input_end)
        for request in self._requests:
            timing = request.timing
            timing.compute_start_ns = start_ns
            timing.compute_input_end_ns = input_end
            timing.compute_infer_end_ns = infer_end
            timing.compute_end_ns = end_ns
            timing.batch_size = rows


def _failed(
    requests: Sequence[InferRequest], rows: int, index: int, error: type[PackserveError], message: str
) -> ExecutionOutcome:
    """A batch answered without running: one error per request (each raised in its own caller)."""
    return ExecutionOutcome([error(message) for _ in requests], rows, True, index)


@dataclass(slots=True)
class Job:
    requests: list[InferRequest]
    rows: int
    loop: asyncio.AbstractEventLoop
    on_done: DoneCallback
    # Its requests were already answered (deadline passed, or failed unstarted); loop thread only.
    answered: bool = False


class InstancePool:
    """Owns the `BackendInstance`s of one model version and one worker thread per instance.

    `batching` (max_batch_size > 0) tells how to count a request's rows when `start`/`run` are not
    given them; `names` names the worker threads (Triton's instance names). `inline_threshold_ns`
    > 0 lets batches that cost less than that run on the event-loop thread, when every instance
    allows it (`BackendInstance.may_run_inline`).

    `cpu_slots` is the process's CPU execution-slot budget (core/cpu_slots.py): a worker of an
    instance marked in `on_cpu` (all, when not given) waits for a slot before each batch; inline
    batches and GPU instances never do.
    `execution_timeout_s` > 0 is the model's execution deadline. Instances that keep it themselves
    (isolated python workers, which are killed) get it through their config; for the others a
    watchdog on the loop answers a batch still running past it with ExecutionTimeoutError (504)
    and sets its instance aside as stuck: batches handed to it fail at once with a 503, and when
    every instance is stuck or failed the model reports `failed_reason` (shown as UNAVAILABLE). A
    stuck instance whose execute finally returns serves again.
    """

    def __init__(
        self,
        model_name: str,
        instances: Sequence[BackendInstance],
        *,
        batching: bool = False,
        names: Sequence[str] | None = None,
        clock: Clock | None = None,
        inline_threshold_ns: int = 0,
        cpu_slots: CpuSlots | None = None,
        on_cpu: Sequence[bool] | None = None,
        execution_timeout_s: float = 0.0,
    ) -> None:
        if not instances:
            raise ValueError(f"model '{model_name}' needs at least one instance")
        self.model_name = model_name
        self._instances = list(instances)
        self._batching = batching
        self._clock = clock or MONOTONIC_CLOCK
        names = list(names) if names is not None else [f"{model_name}_{i}" for i in range(len(instances))]
        # Batches handed to each instance and not yet finished; touched on the loop thread only.
        self._busy = [0] * len(self._instances)
        self._free_count = len(self._instances)
        self._closed = False
        on_cpu = list(on_cpu) if on_cpu is not None else [True] * len(self._instances)
        self._slots = [cpu_slots if cpu else None for cpu in on_cpu]
        self._watchdog = ExecutionWatchdog(
            model_name, self._instances, execution_timeout_s, self._busy, self._answer_late
        )
        inline_allowed = all(instance.may_run_inline for instance in self._instances)
        self.inline_policy = InlineExecutionPolicy(inline_threshold_ns if inline_allowed else 0)
        self._jobs: list[queue.SimpleQueue[Job | None]] = []
        self._threads: list[threading.Thread] = []
        for index, instance in enumerate(self._instances):
            jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
            # Daemon: a backend stuck in native code must not keep the process alive at exit;
            # `close` still joins every thread it can.
            thread = threading.Thread(
                target=self._work, args=(index, instance, jobs), name=f"packserve-{names[index]}", daemon=True
            )
            self._jobs.append(jobs)
            self._threads.append(thread)
            thread.start()

    @property
    def size(self) -> int:
        return len(self._instances)

    @property
    def failed_reason(self) -> str | None:
        """Why no instance can serve (every one stuck past its deadline or failed), else None."""
        reasons = []
        for index, instance in enumerate(self._instances):
            reason = self._watchdog.stuck[index] or instance.failed_reason
            if reason is None:
                return None
            reasons.append(reason)
        return reasons[0]

    @property
    def free_count(self) -> int:
        """Instances with no batch in hand: how many batches can start right now."""
        return self._free_count

    def start(
        self,
        requests: list[InferRequest],
        on_done: DoneCallback,
        instance_index: int | None = None,
        rows: int | None = None,
    ) -> None:
        """Hand a batch to an instance (a free one when `instance_index` is None; the least busy
        if none is free). Returns at once; `on_done` runs later on this loop's thread. `rows` is
        the batch size (counted from the requests when None). Call it on the event-loop thread."""
        if self._closed:
            raise RuntimeError(f"the instances of model '{self.model_name}' are closed")
        index = self._pick() if instance_index is None else instance_index
        if not 0 <= index < len(self._instances):
            raise ValueError(f"model '{self.model_name}' has no instance {index}")
        loop = asyncio.get_running_loop()
        stuck = self._watchdog.stuck[index]
        if stuck is not None:  # fail at once, in a callback of its own like any completion
            loop.call_soon(on_done, _failed(requests, rows or len(requests), index, UnavailableError, stuck))
            return
        idle = self._busy[index] == 0
        if idle:
            self._free_count -= 1
        self._busy[index] += 1
        if rows is None:
            rows = 0
            for request in requests:
                rows += request.batch_size(self._batching)
        job = Job(requests, rows, loop, on_done)
        # An instance still busy on its worker takes the batch there too: one batch at a time.
        if idle and self.inline_policy.inline:
            # Its own callback, not a call from here: the caller (a scheduler's pump) is not
            # re-entered, and what else is ready on the loop runs first.
            loop.call_soon(self._run_inline, index, job)
        else:
            self._watchdog.arm(loop)
            self._jobs[index].put(job)

    async def run(self, requests: list[InferRequest], instance_index: int | None = None) -> BatchResult:
        """Execute one batch and return its per-request results (errors in their slots)."""
        future: asyncio.Future[ExecutionOutcome] = asyncio.get_running_loop().create_future()

        def resolve(outcome: ExecutionOutcome) -> None:
            if not future.done():
                future.set_result(outcome)

        self.start(requests, resolve, instance_index)
        return (await future).results

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the workers after the batches already handed out, join them for up to `timeout_s`
        in all, close the instances. A batch still executing is interrupted (isolated instances
        stop their worker process); a thread still inside a hung in-process model is left behind.
        Blocking: call it from a loader thread (or `asyncio.to_thread`), not the loop."""
        if self._closed:
            return
        self._closed = True
        self._watchdog.stop()
        for jobs in self._jobs:
            jobs.put(None)
        for index, instance in enumerate(self._instances):
            if self._watchdog.running[index] is not None:
                instance.interrupt()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for index, instance in enumerate(self._instances):
            if self._threads[index].is_alive():
                # Still executing: closing it under the worker would be unsafe.
                log.warning(
                    "model '%s': instance %d is still executing at unload; its thread is left behind",
                    self.model_name,
                    index,
                )
                running = self._watchdog.running[index]
                if running is not None:  # its callers must not wait for a batch that never ends
                    job = running[0]
                    with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                        job.loop.call_soon_threadsafe(self._answer_abandoned, index, job)
                continue
            instance.close()

    def _answer_abandoned(self, index: int, job: Job) -> None:
        # Loop thread: the pool closed with this batch still running in a hung model.
        if job.answered:
            return
        job.answered = True
        message = f"model '{self.model_name}' was unloaded while executing"
        job.on_done(_failed(job.requests, job.rows, index, UnavailableError, message))

    def _pick(self) -> int:
        busy = self._busy
        stuck = self._watchdog.stuck
        best = 0
        for index in range(1, len(busy)):
            # A stuck instance is picked only when every instance is stuck.
            if (stuck[best] is not None and stuck[index] is None) or (
                (stuck[index] is None) == (stuck[best] is None) and busy[index] < busy[best]
            ):
                best = index
        return best

    def _run_inline(self, index: int, job: Job) -> None:
        cpu_started_ns = time.thread_time_ns()
        outcome = self._execute(index, self._instances[index], job)
        policy = self.inline_policy
        if policy.record_inline_execution(time.thread_time_ns() - cpu_started_ns):
            log.info(
                "model '%s': batches cost %d us of CPU on the event loop; back to worker threads",
                self.model_name,
                policy.decided_on_ns // 1000,
            )
        self._finished(index, job, outcome)

    def _finished(self, index: int, job: Job, outcome: ExecutionOutcome) -> None:
        # Runs on the loop thread.
        policy = self.inline_policy
        if outcome.cpu_ns and policy.record_worker_execution(outcome.cpu_ns):
            log.info(
                "model '%s': batches cost %d us of CPU on a worker thread; trying them on the event loop",
                self.model_name,
                policy.decided_on_ns // 1000,
            )
        self._busy[index] -= 1
        if job.answered:  # answered at its deadline: its instance is back
            if self._watchdog.release(index) and self._busy[index] > 0:
                self._free_count -= 1  # counted free while stuck; busy again with queued work
            return
        if self._busy[index] == 0:
            self._free_count += 1
        job.on_done(outcome)

    def _answer_late(self, index: int, job: Job, reason: str) -> None:
        """The watchdog's verdict on a batch past its deadline (loop thread): answer its requests
        with 504, set the instance aside (it counts as free: batches handed to it fail at once)
        and fail the batches queued behind it."""
        if job.answered or self._closed:
            return
        job.answered = True
        if self._busy[index] > 0 and not self._watchdog.stuck[index]:
            self._free_count += 1
        self._watchdog.stuck[index] = reason
        log.error("%s", reason)
        job.on_done(_failed(job.requests, job.rows, index, ExecutionTimeoutError, reason))
        while True:
            try:
                queued = self._jobs[index].get_nowait()
            except queue.Empty:
                break
            if queued is None:  # closing: put the stop sign back
                self._jobs[index].put(None)
                break
            self._busy[index] -= 1
            queued.answered = True
            queued.on_done(_failed(queued.requests, queued.rows, index, UnavailableError, reason))

    def _work(self, index: int, instance: BackendInstance, jobs: queue.SimpleQueue[Job | None]) -> None:
        # The worker thread of one instance: runs its batches one after another until told to stop.
        while True:
            job = jobs.get()
            if job is None:
                return
            slots = self._slots[index]
            if slots is not None:  # before the compute start: the wait for a slot is queue time
                oldest = min(request.admitted_ns() for request in job.requests) if job.requests else 0
                slots.acquire(oldest, instance.cpu_cores(job.rows))
            cpu_started_ns = time.thread_time_ns()
            try:
                self._watchdog.running[index] = (job, time.monotonic())
                outcome = self._execute(index, instance, job)
                self._watchdog.running[index] = None
            finally:
                if slots is not None:
                    slots.release()
            outcome.cpu_ns = max(1, time.thread_time_ns() - cpu_started_ns)
            # A closed loop raises RuntimeError: nobody is waiting for this batch any more.
            with contextlib.suppress(RuntimeError):
                job.loop.call_soon_threadsafe(self._finished, index, job, outcome)

    def _execute(self, index: int, instance: BackendInstance, job: Job) -> ExecutionOutcome:
        requests = job.requests
        timer = _BatchTimer(requests, self._clock)
        start_ns = self._clock.now_ns()
        raised = False
        try:
            results = instance.execute(requests, timer)
            results = self._check_results(results, len(requests))
        except Exception as exc:  # the backend failed the whole batch; the worker carries on
            raised = True
            # One error object per request: each is raised in its own caller's task.
            results = [self._execution_error(exc) for _ in requests]
        timer.finish(start_ns, job.rows)
        return ExecutionOutcome(results, job.rows, raised, index)

    def _check_results(self, results: BatchResult, expected: int) -> BatchResult:
        if not isinstance(results, list) or len(results) != expected:
            got = len(results) if isinstance(results, list) else type(results).__name__
            raise ModelExecutionError(
                f"model '{self.model_name}' returned {got} results for a batch of {expected} requests"
            )
        for slot, result in enumerate(results):
            if isinstance(result, (dict, PackserveError)):
                continue
            if isinstance(result, BaseException):
                results[slot] = self._execution_error(result)
            else:
                results[slot] = ModelExecutionError(
                    f"model '{self.model_name}' returned {type(result).__name__} instead of outputs"
                )
        return results

    def _execution_error(self, exc: BaseException) -> PackserveError:
        if isinstance(exc, PackserveError):
            try:
                return type(exc)(*exc.args)
            except Exception:  # an error class with its own constructor: share the instance
                return exc
        return ModelExecutionError(f"model '{self.model_name}' execution failed: {exc}")
