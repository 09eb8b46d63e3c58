"""Models for the Triton-parity differential tests (reshape, explicit ensemble load, BLS, warmup):
python-backend models written exactly as for Triton, so both servers load the same files."""

from __future__ import annotations

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
