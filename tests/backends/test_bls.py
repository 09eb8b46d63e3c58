"""BLS end to end in one engine: a python model calling others with exec() / async_exec(), the
calls batched by the callee's batcher, counted in its statistics, errors as TritonError."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from packserve.core.engine import Engine, EngineOptions
from packserve.errors import InvalidArgumentError, ModelExecutionError, NotFoundError
from packserve.messages import InferRequest
from tests.differential.parity_models import BLS_FILES, bls_test_image, write_files

IDENTITY_CONFIG = """\
name: "identity"
backend: "python"
max_batch_size: 0
input [ { name: "X" data_type: TYPE_FP32 dims: [ 8, 8 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ 8, 8 ] } ]
"""

IDENTITY_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())])
                for r in requests]
"""

# Calls "identity" with its own input and answers 1 when what came back is the very same memory.
BY_REFERENCE_CONFIG = """\
name: "by_reference"
backend: "python"
max_batch_size: 0
input [ { name: "CROP" data_type: TYPE_FP32 dims: [ 8, 8 ] } ]
output [ { name: "SHARED" data_type: TYPE_BOOL dims: [ 1 ] } ]
"""

BY_REFERENCE_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            crop = pb_utils.get_input_tensor_by_name(request, "CROP")
            answer = pb_utils.InferenceRequest(
                model_name="identity", requested_output_names=["Y"],
                inputs=[pb_utils.Tensor("X", crop.as_numpy())],
            ).exec()
            back = pb_utils.get_output_tensor_by_name(answer, "Y").as_numpy()
            shared = np.array([np.shares_memory(back, crop.as_numpy())])
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SHARED", shared)]))
        return responses
"""

SYNC_CALLER_CONFIG = """\
name: "sync_caller"
backend: "python"
max_batch_size: 0
input [ { name: "CROP" data_type: TYPE_FP32 dims: [ 8, 8 ] } ]
output [ { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""

# exec() from a plain execute; the "mode" request parameter picks the failure to show.
SYNC_CALLER_MODEL = """\
import json
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            mode = json.loads(request.parameters()).get("mode", "ok")
            crop = pb_utils.get_input_tensor_by_name(request, "CROP").as_numpy()
            if mode == "bad_shape":
                crop = crop[:4]
            target = "sync_caller" if mode == "self" else "bls_classify"
            call = pb_utils.InferenceRequest(
                model_name=target, requested_output_names=["SCORE"],
                inputs=[pb_utils.Tensor("CROP", crop[None])],
            )
            try:
                answer = call.exec(decoupled=(mode == "decoupled"))
            except pb_utils.TritonModelException as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("raised: " + exc.message())))
                continue
            if answer.has_error():
                error = answer.error()
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"code {error.code()}: {error.message()}", error.code())))
                continue
            score = pb_utils.get_output_tensor_by_name(answer, "SCORE").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SCORE", score[0])]))
        return responses
"""


def write_bls_repository(tmp_path: Path) -> None:
    files = {
        **BLS_FILES,
        "sync_caller/config.pbtxt": SYNC_CALLER_CONFIG,
        "sync_caller/1/model.py": SYNC_CALLER_MODEL,
        "identity/config.pbtxt": IDENTITY_CONFIG,
        "identity/1/model.py": IDENTITY_MODEL,
        "by_reference/config.pbtxt": BY_REFERENCE_CONFIG,
        "by_reference/1/model.py": BY_REFERENCE_MODEL,
    }
    write_files(tmp_path, files)


@pytest.fixture
async def engine(tmp_path: Path):
    write_bls_repository(tmp_path)
    engine = await Engine.start(EngineOptions(model_repository=tmp_path))
    assert all(e.state == "READY" for e in engine.repository_index()), engine.repository_index()
    yield engine
    await engine.shutdown()


async def test_detect_crop_classify_batched_and_counted(engine: Engine) -> None:
    response = await engine.infer(InferRequest("bls_pipeline", {"IMAGE": bls_test_image()}))
    np.testing.assert_allclose(response.outputs["SCORES"], [0.9, 0.6, 1.0], rtol=1e-6)
    classify = engine.model_statistics("bls_classify")[0]
    detect = engine.model_statistics("bls_detect")[0]
    assert detect.inference_count == 1
    assert classify.inference_count == 3
    # The three concurrent async_exec calls met in the classifier's batcher (50 ms window).
    assert classify.execution_count < classify.inference_count


async def test_callee_errors_reach_the_caller(engine: Engine) -> None:
    image = bls_test_image()
    image[0, 0] = -1.0
    with pytest.raises(NotFoundError, match="bls_no_such_model"):
        await engine.infer(InferRequest("bls_pipeline", {"IMAGE": image}))
    crop = np.full((8, 8), 0.5, np.float32)
    ok = await engine.infer(InferRequest("sync_caller", {"CROP": crop}))
    np.testing.assert_allclose(ok.outputs["SCORE"], [0.5])
    # The callee's validation message, with Triton's INVALID_ARG code (3).
    with pytest.raises(InvalidArgumentError, match=r"code 3: .*bls_classify.*expected shape"):
        await engine.infer(InferRequest("sync_caller", {"CROP": crop}, parameters={"mode": "bad_shape"}))
    with pytest.raises(InvalidArgumentError, match="cannot call the model itself"):
        await engine.infer(InferRequest("sync_caller", {"CROP": crop}, parameters={"mode": "self"}))
    with pytest.raises(ModelExecutionError, match="raised: decoupled BLS"):
        await engine.infer(InferRequest("sync_caller", {"CROP": crop}, parameters={"mode": "decoupled"}))
    # The server keeps serving.
    assert (await engine.infer(InferRequest("sync_caller", {"CROP": crop}))).outputs["SCORE"].shape == (1,)


async def test_callers_give_their_cpu_slot_back_while_they_wait(tmp_path: Path) -> None:
    # One slot for the whole server: a caller holding it while it waits for its callees (which
    # need a slot too) would deadlock; exec() and async_exec() callers both make progress.
    write_bls_repository(tmp_path)
    engine = await Engine.start(EngineOptions(model_repository=tmp_path, cpu_execution_slots=1))
    try:
        crop = np.full((8, 8), 0.5, np.float32)
        calls = [engine.infer(InferRequest("bls_pipeline", {"IMAGE": bls_test_image()})) for _ in range(3)]
        calls += [engine.infer(InferRequest("sync_caller", {"CROP": crop})) for _ in range(3)]
        responses = await asyncio.wait_for(asyncio.gather(*calls), 120)
        for response in responses[:3]:
            np.testing.assert_allclose(response.outputs["SCORES"], [0.9, 0.6, 1.0], rtol=1e-6)
        for response in responses[3:]:
            np.testing.assert_allclose(response.outputs["SCORE"], [0.5])
        assert engine.cpu_slots is not None and engine.cpu_slots.policy.in_use == 0
    finally:
        await engine.shutdown()
async def test_tensors_travel_by_reference(engine: Engine) -> None:
    crop = np.ones((8, 8), np.float32)
    response = await engine.infer(InferRequest("by_reference", {"CROP": crop}))
    # The callee got the caller's array and its output came back without a copy.
    assert response.outputs["SHARED"].tolist() == [True]


def test_exec_outside_a_served_model_is_refused() -> None:
    from packserve.backends.python import pb_utils

    request = pb_utils.InferenceRequest(model_name="x", inputs=[], requested_output_names=[])
    with pytest.raises(pb_utils.TritonModelException, match="within execute"):
        request.exec()
