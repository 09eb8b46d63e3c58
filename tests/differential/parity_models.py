"""Models for the Triton-parity differential tests (reshape, explicit ensemble load, BLS, warmup):
python-backend models written exactly as for Triton, so both servers load the same files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESHAPE_BATCHING_CONFIG = """\
name: "reshape_batching"
backend: "python"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 16 ] reshape: { shape: [ 4, 4 ] } } ]
output [
  { name: "OUT" data_type: TYPE_FP32 dims: [ 4, 4 ] reshape: { shape: [ 16 ] } },
  { name: "SUM" data_type: TYPE_FP32 dims: [ 1 ] reshape: { shape: [ ] } },
  { name: "SEEN" data_type: TYPE_INT64 dims: [ 3 ] }
]
"""

RESHAPE_BATCHING_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    # SEEN is the input shape the model was given (the reshape applied); OUT and SUM come back in
    # their reshape shape and the server answers them in their dims.
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            rows = x.shape[0]
            seen = np.array([x.shape], dtype=np.int64).repeat(rows, axis=0)
            flat = x.reshape(rows, 16)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", flat * 2),
                pb_utils.Tensor("SUM", flat.sum(axis=1).astype(np.float32)),
                pb_utils.Tensor("SEEN", seen),
            ]))
        return responses
"""

RESHAPE_PLAIN_CONFIG = """\
name: "reshape_plain"
backend: "python"
max_batch_size: 0
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 16 ] reshape: { shape: [ 4, 4 ] } } ]
output [
  { name: "OUT" data_type: TYPE_FP32 dims: [ 4, 4 ] reshape: { shape: [ 16 ] } },
  { name: "SEEN" data_type: TYPE_INT64 dims: [ 2 ] }
]
"""

RESHAPE_PLAIN_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", x.reshape(16) * 2),
                pb_utils.Tensor("SEEN", np.array(x.shape, dtype=np.int64)),
            ]))
        return responses
"""

STEP_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 4 ] }} ]
"""

STEP_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy() + 1)]
            )
            for r in requests
        ]
"""

PIPE_CONFIG = """\
name: "parity_pipe"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling { step [
  { model_name: "parity_step_a" model_version: -1
    input_map { key: "X" value: "IN" } output_map { key: "Y" value: "MID" } },
  { model_name: "parity_step_b" model_version: -1
    input_map { key: "X" value: "MID" } output_map { key: "Y" value: "OUT" } }
] }
"""

# Loaded at startup by both servers.
PARITY_MODELS = ("reshape_batching", "reshape_plain")

PARITY_FILES = {
    "reshape_batching/config.pbtxt": RESHAPE_BATCHING_CONFIG,
    "reshape_batching/1/model.py": RESHAPE_BATCHING_MODEL,
    "reshape_plain/config.pbtxt": RESHAPE_PLAIN_CONFIG,
    "reshape_plain/1/model.py": RESHAPE_PLAIN_MODEL,
    # Not loaded at startup: the explicit-load test loads the ensemble alone.
    "parity_step_a/config.pbtxt": STEP_CONFIG.format(name="parity_step_a"),
    "parity_step_a/1/model.py": STEP_MODEL,
    "parity_step_b/config.pbtxt": STEP_CONFIG.format(name="parity_step_b"),
    "parity_step_b/1/model.py": STEP_MODEL,
    "parity_pipe/config.pbtxt": PIPE_CONFIG,
    "parity_pipe/1/.keep": "",
}

# ---- BLS: detect -> crop -> classify, the python model calling the other two as in Triton -------

DETECT_CONFIG = """\
name: "bls_detect"
backend: "python"
max_batch_size: 0
input [ { name: "IMAGE" data_type: TYPE_FP32 dims: [ 32, 32 ] } ]
output [ { name: "CORNERS" data_type: TYPE_INT32 dims: [ -1, 2 ] } ]
"""

DETECT_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    # A "detector": the top-left corner of every 8x8 tile whose mean is over 0.5.
    def execute(self, requests):
        responses = []
        for request in requests:
            image = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            tiles = image.reshape(4, 8, 4, 8).mean(axis=(1, 3))
            corners = (np.argwhere(tiles > 0.5) * 8).astype(np.int32).reshape(-1, 2)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("CORNERS", corners)]))
        return responses
"""

CLASSIFY_CONFIG = """\
name: "bls_classify"
backend: "python"
max_batch_size: 8
input [ { name: "CROP" data_type: TYPE_FP32 dims: [ 8, 8 ] } ]
output [ { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] } ]
dynamic_batching { max_queue_delay_microseconds: 50000 }
"""

CLASSIFY_MODEL = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            crops = pb_utils.get_input_tensor_by_name(request, "CROP").as_numpy()
            score = crops.reshape(crops.shape[0], -1).mean(axis=1, keepdims=True).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SCORE", score)]))
        return responses
"""

PIPELINE_CONFIG = """\
name: "bls_pipeline"
backend: "python"
max_batch_size: 0
input [ { name: "IMAGE" data_type: TYPE_FP32 dims: [ 32, 32 ] } ]
output [ { name: "SCORES" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""

PIPELINE_MODEL = """\
import asyncio

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    # detect (exec) -> crop -> classify every crop (async_exec, concurrently, so the classifier's
    # dynamic batcher can batch them). A negative first pixel calls a model that does not exist, to
    # show how a callee's error reaches the client.
    async def execute(self, requests):
        responses = []
        for request in requests:
            image = pb_utils.get_input_tensor_by_name(request, "IMAGE")
            detector = "bls_detect" if image.as_numpy()[0, 0] >= 0 else "bls_no_such_model"
            detected = pb_utils.InferenceRequest(
                model_name=detector, requested_output_names=["CORNERS"], inputs=[image]
            ).exec()
            if detected.has_error():
                responses.append(pb_utils.InferenceResponse(error=detected.error()))
                continue
            corners = pb_utils.get_output_tensor_by_name(detected, "CORNERS").as_numpy()
            pixels = image.as_numpy()
            calls = [
                pb_utils.InferenceRequest(
                    model_name="bls_classify",
                    requested_output_names=["SCORE"],
                    inputs=[pb_utils.Tensor("CROP", pixels[y : y + 8, x : x + 8][None].copy())],
                ).async_exec()
                for y, x in corners
            ]
            scores = []
            for answer in await asyncio.gather(*calls):
                if answer.has_error():
                    raise pb_utils.TritonModelException(answer.error().message())
                scores.append(pb_utils.get_output_tensor_by_name(answer, "SCORE").as_numpy()[0, 0])
            out = np.array(scores, dtype=np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("SCORES", out)]))
        return responses
"""

BLS_MODELS = ("bls_detect", "bls_classify", "bls_pipeline")

BLS_FILES = {
    "bls_detect/config.pbtxt": DETECT_CONFIG,
    "bls_detect/1/model.py": DETECT_MODEL,
    "bls_classify/config.pbtxt": CLASSIFY_CONFIG,
    "bls_classify/1/model.py": CLASSIFY_MODEL,
    "bls_pipeline/config.pbtxt": PIPELINE_CONFIG,
    "bls_pipeline/1/model.py": PIPELINE_MODEL,
}
PARITY_MODELS = (*PARITY_MODELS, *BLS_MODELS)
PARITY_FILES = {**PARITY_FILES, **BLS_FILES}


def bls_test_image() -> Any:
    """Three bright tiles of different brightness on a dark image."""
    import numpy as np

    image = np.zeros((32, 32), dtype=np.float32)
    image[0:8, 8:16] = 0.9
    image[16:24, 0:8] = 0.6
    image[24:32, 24:32] = 1.0
    return image


# ---- model_warmup: a good sample before READY, a failing one fails the load ---------------------

WARMUP_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 4
input [ {{ name: "X" data_type: TYPE_UINT8 dims: [ 4 ] }} ]
output [ {{ name: "Y" data_type: TYPE_UINT8 dims: [ 4 ] }} ]
model_warmup [
  {{ name: "zeros" batch_size: 2 count: 2
     inputs {{ key: "X" value: {{ data_type: TYPE_UINT8 dims: [ 4 ] zero_data: true }} }} }},
  {{ name: "from_file" batch_size: 1
     inputs {{ key: "X" value: {{ data_type: TYPE_UINT8 dims: [ 4 ] input_data_file: "{file}" }} }} }}
]
"""

WARMUP_MODEL = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if (x > 60).any():
                # (An exception raised here hangs Triton 2.51's load: answer an error instead.)
                error = pb_utils.TritonError("warmup_marker: value over 60")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x)]))
        return responses
"""

WARMUP_FILES = {
    "warmup_good/config.pbtxt": WARMUP_CONFIG.format(name="warmup_good", file="small.bin"),
    "warmup_good/1/model.py": WARMUP_MODEL,
    "warmup_good/warmup/small.bin": "\x01\x02\x03\x04",
    "warmup_bad/config.pbtxt": WARMUP_CONFIG.format(name="warmup_bad", file="big.bin"),
    "warmup_bad/1/model.py": WARMUP_MODEL,
    "warmup_bad/warmup/big.bin": "ABCD",
}
PARITY_FILES = {**PARITY_FILES, **WARMUP_FILES}

# ---- response cache: a model with response_cache enabled (both servers run a local cache) -------

CACHED_FILES = {
    "cached_step/config.pbtxt": STEP_CONFIG.format(name="cached_step") + "response_cache { enable: true }\n",
    "cached_step/1/model.py": STEP_MODEL,
}
PARITY_MODELS = (*PARITY_MODELS, "cached_step")
PARITY_FILES = {**PARITY_FILES, **CACHED_FILES}


def write_files(root: Path, files: Mapping[str, str]) -> Path:
    """Write each text under `root` at its relative path (a model repository); returns `root`."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root
