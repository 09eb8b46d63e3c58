"""The worker process of an isolated python-model instance (Triton's "stub"): `python -m
packserve.backends.python.stub <fd>`.

It imports the model.py, runs initialize / execute / finalize as the in-process backend does, and
talks to the server over the socket inherited as <fd>: small pickled dicts for control, tensors in
shared memory (shm_arena). `InferenceRequest.exec()` / `async_exec()` (BLS) are forwarded to the
server, which runs them through its engine and answers in shared memory too. Whatever the model
does here (crash, os._exit, segfault, spin, leak) ends at most this process.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import pickle
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from packserve.backends.python import pb_utils
from packserve.backends.python.shm_arena import ReadArena, WriteArena
from packserve.errors import PackserveError

_ERROR_CODE_INTERNAL = pb_utils.TritonError.INTERNAL


class _Stub:
    def __init__(self, conn: Connection, init: dict[str, Any]) -> None:
        self._conn = conn
        self._model_name: str = init["model_name"]
        self._inputs = ReadArena()
        self._bls_results = ReadArena()
        self._outputs = WriteArena(init["arena_prefix"])
        self._lock = threading.Lock()  # one conversation with the server at a time
        self._model: Any = None

    def start(self, init: dict[str, Any]) -> None:
        from packserve.backends.python.model import load_user_module

        self._install_bls()
        module = load_user_module(_path(init["model_file"]), self._model_name)
        model = module.TritonPythonModel()
        initialize = getattr(model, "initialize", None)
        if initialize is not None:
            initialize(init["args"])
        self._model = model

    def serve(self) -> None:
        while True:
            try:
                message = _receive(self._conn)
            except EOFError:  # the server went away: nothing left to serve
                return
            op = message["op"]
            if op == "execute":
                _send(self._conn, self._execute(message))
            elif op == "finalize":
                self._finalize()
                _send(self._conn, {"op": "finalized"})
                return

    def _execute(self, message: dict[str, Any]) -> dict[str, Any]:
        pb_requests = []
        for request in message["requests"]:
            tensors = self._inputs.read(message["arena"], request["inputs"], copy=False)
            pb_requests.append(
                pb_utils.InferenceRequest(
                    model_name=self._model_name,
                    requested_output_names=request["outputs"],
                    inputs=[pb_utils.Tensor(name, array) for name, array in tensors],
                    request_id=request["id"],
                    parameters=request["parameters"],
                )
            )
        try:
            responses = self._model.execute(pb_requests)
            if inspect.iscoroutine(responses):  # `async def execute`, as Triton allows
                responses = asyncio.run(responses)
        except Exception as exc:  # the user's execute may raise anything; it fails the whole batch
            return {"op": "raised", "message": f"execute() raised {type(exc).__name__}: {exc}"}
        if not isinstance(responses, list | tuple) or len(responses) != len(pb_requests):
            got = (
                f"{len(responses)} responses"
                if isinstance(responses, list | tuple)
                else repr(type(responses))
            )
            return {
                "op": "raised",
                "message": "execute() must return one response per request: "
                f"expected {len(pb_requests)}, got {got}",
            }
        return self._encode_responses(responses)

    def _encode_responses(self, responses: Any) -> dict[str, Any]:
        encoded: list[dict[str, Any]] = []
        tensors: list[tuple[str, Any]] = []
        for response in responses:
            if not isinstance(response, pb_utils.InferenceResponse):
                encoded.append({"bad_type": type(response).__name__})
                continue
            error = response.error()
            if error is not None:
                code = error.code() if isinstance(error, pb_utils.TritonError) else _ERROR_CODE_INTERNAL
                message = error.message() if isinstance(error, pb_utils.TritonError) else str(error)
                encoded.append({"error": (code, message)})
                continue
            try:
                produced = [(t.name(), t.as_numpy()) for t in response.output_tensors()]
            except pb_utils.TritonModelException as exc:
                encoded.append({"error": (_ERROR_CODE_INTERNAL, exc.message())})
                continue
            encoded.append({"count": len(produced)})
            tensors.extend(produced)
        path, slots = self._outputs.write(tensors)
        position = 0
        for entry in encoded:
            count = entry.pop("count", None)
            if count is not None:
                entry["outputs"] = slots[position : position + count]
                position += count
        return {"op": "result", "arena": path, "responses": encoded}

    def _finalize(self) -> None:
        finalize = getattr(self._model, "finalize", None)
        if finalize is not None:
            try:
                finalize()
            except Exception:  # a failing finalize must not stop the unload
                logging.getLogger("packserve.python_model").exception("finalize() failed")

    # ---- BLS: run another model through the server ------------------------------------------------
    def _install_bls(self) -> None:
        stub = self

        def exec_(self: pb_utils.InferenceRequest, decoupled: bool = False) -> pb_utils.InferenceResponse:
            if decoupled:
                raise pb_utils.TritonModelException("decoupled BLS calls are not supported by packserve")
            return stub.forward_bls(self)

        async def async_exec(
            self: pb_utils.InferenceRequest, decoupled: bool = False
        ) -> pb_utils.InferenceResponse:
            return exec_(self, decoupled)

        pb_utils.InferenceRequest.exec = exec_  # type: ignore[method-assign]
        pb_utils.InferenceRequest.async_exec = async_exec  # type: ignore[method-assign]

    def forward_bls(self, request: pb_utils.InferenceRequest) -> pb_utils.InferenceResponse:
        with self._lock:
            path, slots = self._outputs.write((t.name(), t.as_numpy()) for t in request.inputs())
            _send(
                self._conn,
                {
                    "op": "bls",
                    "model": request.model_name(),
                    "version": request.model_version(),
                    "outputs": request.requested_output_names(),
                    "request_id": request.request_id(),
                    "parameters": request.parameters(),
                    "arena": path,
                    "inputs": slots,
                },
            )
            reply = _receive(self._conn)
        if "error" in reply:
            code, message = reply["error"]
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
        tensors = self._bls_results.read(reply["arena"], reply["outputs"], copy=True)
        return pb_utils.InferenceResponse([pb_utils.Tensor(name, array) for name, array in tensors])


def _send(conn: Connection, message: dict[str, Any]) -> None:
    conn.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))


def _receive(conn: Connection) -> dict[str, Any]:
    message: dict[str, Any] = pickle.loads(conn.recv_bytes())
    return message


def _path(text: str) -> Any:
    from pathlib import Path

    return Path(text)


def _die_with_the_server() -> None:
    """End this worker when the server is gone, even a SIGKILLed server, so that a worker stuck in
    a hung model never outlives it. (Not PR_SET_PDEATHSIG: it fires when the server *thread* that
    started the worker ends, and loader threads may end while the server lives.)"""
    server = os.getppid()

    def watch() -> None:
        while os.getppid() == server:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="packserve-stub-parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    _die_with_the_server()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    conn = Connection(int(argv[1]))
    init = _receive(conn)
    stub = _Stub(conn, init)
    try:
        stub.start(init)
    except PackserveError as exc:  # the module could not be imported: its message says why
        _send(conn, {"op": "failed", "message": str(exc)})
        return 1
    except Exception as exc:  # initialize() failed
        _send(conn, {"op": "failed", "message": f"initialize() failed: {type(exc).__name__}: {exc}"})
        return 1
    _send(conn, {"op": "ready", "pid": os.getpid()})
    stub.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
