"""Isolated python-model instances: each runs its model.py in a worker process of its own (stub.py).

The server side of one instance: start the worker, hand it batches (tensors in shared memory),
watch it while it executes, and contain whatever goes wrong:

- the worker dies (crash, os._exit, segfault): the batch fails with a 500 naming the exit status;
  the next batch restarts the worker, after a back-off (0.5 s doubling to 8 s) during which
  requests get a 503; after MAX_CONSECUTIVE_FAILURES failures in a row with no success between,
  the instance gives up and its model shows UNAVAILABLE with the reason.
- the execution deadline passes (hang, pure-Python spin): the worker is killed, the batch gets a
  504, and the worker restarts as after a crash.
- the worker's resident memory passes max_rss_mb: the worker is killed, the batch fails, and the
  instance stays failed (UNAVAILABLE with the reason) until the model is reloaded: a leak would
  only come back.

Threading: `execute` runs on the instance's worker thread in the server; `interrupt` may come from
any thread (unload) and makes a waiting `execute` return at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from packserve.backends.base import BackendInstance, BatchResult, BlsExecutor, ExecutionTimer
from packserve.backends.batch_rows import output_names_for
from packserve.backends.limits import ExecutionLimits
from packserve.backends.python.bls import triton_code
from packserve.backends.python.responses import pb_request_parameters, response_outputs
from packserve.backends.python.shm_arena import ReadArena, WriteArena, remove_arena_files
from packserve.backends.python.worker import WorkerDied, WorkerProcess
from packserve.errors import (
    ExecutionTimeoutError,
    ModelExecutionError,
    ModelLoadError,
    PackserveError,
    UnavailableError,
)
from packserve.messages import InferRequest, RequestedOutput
from packserve.model_spec import ModelSpec

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 5
_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 8.0
_START_TIMEOUT_S = 300.0  # importing a model and its initialize() may be slow, but not endless


class IsolatedPythonInstance(BackendInstance):
    def __init__(
        self,
        spec: ModelSpec,
        instance_name: str,
        init_message: dict[str, Any],
        limits: ExecutionLimits,
        bls: BlsExecutor | None,
        arena_prefix: str,
    ) -> None:
        self._spec = spec
        self._model = spec.name
        self._instance = instance_name
        self._init = init_message
        self._limits = limits
        self._bls = bls
        self._prefix = arena_prefix
        self._inputs = WriteArena(f"{arena_prefix}-in")
        self._bls_results = WriteArena(f"{arena_prefix}-bls")
        self._outputs = ReadArena()
        self._worker: WorkerProcess | None = None
        self._failures = 0
        self._last_failure = ""
        self._restart_at = 0.0
        self._failed_reason: str | None = None
        self._interrupted = threading.Event()
        self._worker = self._start_worker(load=True)

    # ---- BackendInstance ----------------------------------------------------------------------
    @property
    def failed_reason(self) -> str | None:
        return self._failed_reason

    @property
    def enforces_execution_timeout(self) -> bool:
        return True

    def execute(self, requests: Sequence[InferRequest], timer: ExecutionTimer) -> BatchResult:
        worker = self._ready_worker()
        wanted = [output_names_for(request, self._spec) for request in requests]
        path, described = self._write_inputs(requests, wanted)
        timer.inputs_ready()
        worker.send({"op": "execute", "arena": path, "requests": described})
        reply = self._wait_for_result(worker)
        timer.infer_done()
        self._failures = 0
        if reply["op"] == "raised":
            raise ModelExecutionError(f"model '{self._model}': {reply['message']}")
        outputs = self._outputs.read(
            reply["arena"], [s for r in reply["responses"] for s in r.get("outputs", ())], copy=True
        )
        results: BatchResult = []
        position = 0
        for response, names in zip(reply["responses"], wanted, strict=True):
            if "bad_type" in response:
                results.append(
                    ModelExecutionError(
                        f"model '{self._model}': execute() returned {response['bad_type']}, "
                        "expected InferenceResponse"
                    )
                )
                continue
            count = len(response.get("outputs", ()))
            produced = dict(outputs[position : position + count])
            position += count
            results.append(response_outputs(self._model, response.get("error"), produced, names))
        return results

    def interrupt(self) -> None:
        """Stop the worker now (unload with a batch still running): `execute` returns at once."""
        self._interrupted.set()
        worker = self._worker
        if worker is not None:
            worker.kill()

    def close(self) -> None:
        if self._interrupted.is_set():
            self.interrupt()
        else:
            self._finalize()
        self._inputs.close()
        self._bls_results.close()
        self._outputs.close()
        remove_arena_files(self._prefix)

    # ---- the worker's life --------------------------------------------------------------------
    def _start_worker(self, load: bool) -> WorkerProcess:
        remove_arena_files(f"{self._prefix}-out")
        worker = WorkerProcess(f"{self._instance} (model '{self._model}')")
        init = dict(self._init, arena_prefix=f"{self._prefix}-out")
        try:
            worker.send({"op": "init", **init})
            while True:
                reply = worker.receive(self._deadline_watch(worker, time.monotonic() + _START_TIMEOUT_S))
                if reply["op"] == "bls":  # BLS while loading is not offered: answer, keep waiting
                    worker.send(
                        {"op": "bls_result", "error": (1, "BLS is not available during initialize()")}
                    )
                    continue
                break
        except (WorkerDied, ExecutionTimeoutError) as exc:
            worker.kill()
            message = f"model '{self._model}': the worker process of instance '{self._instance}' {exc}"
            raise (ModelLoadError(message) if load else UnavailableError(message)) from None
        if reply["op"] == "failed":
            worker.kill()
            detail = reply["message"]
            message = f"model '{self._model}': instance '{self._instance}': {detail}"
            raise ModelLoadError(message) if load else UnavailableError(message)
        return worker

    def _ready_worker(self) -> WorkerProcess:
        if self._failed_reason is not None:
            raise UnavailableError(self._failed_reason)
        if self._interrupted.is_set():
            raise UnavailableError(f"model '{self._model}' is unloading")
        if self._worker is not None and self._worker.alive():
            return self._worker
        wait = self._restart_at - time.monotonic()
        if wait > 0:
            raise UnavailableError(
                f"model '{self._model}': instance '{self._instance}' is restarting after: "
                f"{self._last_failure}; retry in {wait:.1f} s"
            )
        log.warning("model '%s': restarting the worker process of '%s'", self._model, self._instance)
        try:
            self._worker = self._start_worker(load=False)
        except UnavailableError as exc:
            self._worker = None
            self._record_failure(str(exc))
            raise
        return self._worker

    def _record_failure(self, reason: str) -> None:
        self._failures += 1
        self._last_failure = reason
        if self._failures >= MAX_CONSECUTIVE_FAILURES:
            self._failed_reason = (
                f"model '{self._model}': instance '{self._instance}' failed {self._failures} times in a row "
                f"and is stopped; last failure: {reason}; reload the model to retry"
            )
            log.error("%s", self._failed_reason)
            return
        backoff = min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** (self._failures - 1))
        self._restart_at = time.monotonic() + backoff
        log.error("model '%s': %s; restarting in %.1f s", self._model, reason, backoff)

    def _lose_worker(self, worker: WorkerProcess, reason: str, permanent: bool = False) -> None:
        worker.kill()
        self._worker = None
        if permanent:
            self._failed_reason = f"model '{self._model}': {reason}; reload the model to retry"
            log.error("%s", self._failed_reason)
        else:
            self._record_failure(reason)

    def _finalize(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        try:
            if worker.alive():
                worker.send({"op": "finalize"})
                worker.receive(self._deadline_watch(worker, time.monotonic() + 5.0))
        except (WorkerDied, ExecutionTimeoutError):
            pass
        finally:
            worker.kill()

    # ---- one execution --------------------------------------------------------------------------
    def _write_inputs(
        self, requests: Sequence[InferRequest], wanted: list[list[str]]
    ) -> tuple[str, list[dict[str, Any]]]:
        tensors: list[tuple[str, Any]] = []
        for request in requests:
            tensors.extend(request.inputs.items())
        path, slots = self._inputs.write(tensors)
        described: list[dict[str, Any]] = []
        position = 0
        for request, names in zip(requests, wanted, strict=True):
            count = len(request.inputs)
            described.append(
                {
                    "id": request.id,
                    "parameters": pb_request_parameters(request),
                    "outputs": names,
                    "inputs": slots[position : position + count],
                }
            )
            position += count
        return path, described

    def _wait_for_result(self, worker: WorkerProcess) -> dict[str, Any]:
        timeout = self._limits.execution_timeout_s
        deadline = time.monotonic() + timeout if timeout else None
        watch = self._deadline_watch(worker, deadline)
        try:
            while True:
                message = worker.receive(watch)
                if message["op"] == "bls":
                    self._serve_bls(worker, message, deadline)
                    continue
                self._check_memory(worker)
                return message
        except WorkerDied as exc:
            if self._interrupted.is_set():
                raise UnavailableError(f"model '{self._model}' was unloaded while executing") from None
            if self._failed_reason is not None:  # the memory watch killed it
                raise ModelExecutionError(self._failed_reason) from None
            reason = f"the worker process of instance '{self._instance}' {exc}"
            self._lose_worker(worker, reason)
            raise ModelExecutionError(f"model '{self._model}': {reason}") from None
        except ExecutionTimeoutError:
            reason = (
                f"execution of instance '{self._instance}' exceeded its deadline of {timeout:g} s "
                "(parameter execution_timeout_s); its worker process was killed"
            )
            self._lose_worker(worker, reason)
            raise ExecutionTimeoutError(f"model '{self._model}': {reason}") from None

    def _deadline_watch(self, worker: WorkerProcess, deadline: float | None) -> Callable[[], None]:
        """What `receive` checks between polls: deadline passed, memory over budget, unload."""

        def watch() -> None:
            if self._interrupted.is_set():
                worker.kill()
            if deadline is not None and time.monotonic() > deadline:
                raise ExecutionTimeoutError("did not answer before its deadline")
            self._check_memory(worker)

        return watch

    def _check_memory(self, worker: WorkerProcess) -> None:
        budget = self._limits.max_rss_bytes
        if not budget:
            return
        rss = worker.rss_bytes()
        if rss > budget:
            self._lose_worker(
                worker,
                f"the worker process of instance '{self._instance}' used {rss / 2**20:.0f} MiB, above "
                f"its budget max_rss_mb={budget / 2**20:g}; it was killed",
                permanent=True,
            )
            raise WorkerDied("was killed for its memory")

    def _serve_bls(self, worker: WorkerProcess, message: dict[str, Any], deadline: float | None) -> None:
        """Run a model's BLS request through the server's engine and answer in shared memory."""
        if self._bls is None:
            worker.send({"op": "bls_result", "error": (1, "BLS is not available here")})
            return
        tensors = self._outputs.read(message["arena"], message["inputs"], copy=True)
        version = message["version"]
        request = InferRequest(
            model_name=message["model"],
            inputs=dict(tensors),
            model_version=str(version) if version and version > 0 else "",
            outputs=[RequestedOutput(name) for name in message["outputs"]] or None,
            id=message["request_id"],
        )
        remaining = (deadline - time.monotonic()) if deadline is not None else 3600.0
        try:
            response = self._bls.infer(request, max(0.001, remaining))
        except PackserveError as exc:
            worker.send({"op": "bls_result", "error": (triton_code(exc), str(exc))})
            return
        except Exception as exc:  # the callee may fail in any way: the caller gets the error
            worker.send(
                {"op": "bls_result", "error": (1, f"BLS request failed: {type(exc).__name__}: {exc}")}
            )
            return
        path, slots = self._bls_results.write(response.outputs.items())
        worker.send({"op": "bls_result", "arena": path, "outputs": slots})
