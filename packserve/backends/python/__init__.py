"""Python backend: Triton python-backend models run in-process, with `triton_python_backend_utils`."""

from packserve.backends.python.model import PythonModel, install_pb_utils

__all__ = ["PythonModel", "install_pb_utils"]
