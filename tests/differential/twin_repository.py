"""A repository both servers can load: the reference Triton here has only the python backend, so
`simple` is a python-backend twin of the ONNX add/sub example (same name, tensors and config)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from packserve.examples.simple_repository import PYTHON_ADD_CONFIG, PYTHON_ADD_MODEL
from tests.differential.parity_models import PARITY_FILES, PARITY_MODELS, write_files

SIMPLE_TWIN_CONFIG = """\
name: "simple"
backend: "python"
max_batch_size: 8
input [
  { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_INT32 dims: [ 16 ] }
]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

SIMPLE_TWIN_MODEL = '''\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, as Triton's `simple` example."""

    def execute(self, requests):
        responses = []
        for request in requests:
            a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            outputs = [pb_utils.Tensor("OUTPUT0", a + b), pb_utils.Tensor("OUTPUT1", a - b)]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
'''

MODELS = ("simple", "python_add", *PARITY_MODELS)
# The two twins tests of flags and trace settings need (the others slow both servers' start).
SERVING_TWINS = ("simple", "python_add")


def build_twin_repository(root: Path, models: Sequence[str] | None = None) -> Path:
    """The twin repository, or only the `models` named."""
    files = {
        "simple/config.pbtxt": SIMPLE_TWIN_CONFIG,
        "simple/1/model.py": SIMPLE_TWIN_MODEL,
        "python_add/config.pbtxt": PYTHON_ADD_CONFIG,
        "python_add/1/model.py": PYTHON_ADD_MODEL,
        **PARITY_FILES,
    }
    if models is not None:
        files = {path: text for path, text in files.items() if path.split("/", 1)[0] in models}
    return write_files(root, files)
