"""Backends by name, imported on first use so `import packserve` needs no optional package."""

from __future__ import annotations

import importlib

from packserve.backends.base import BackendModel
from packserve.errors import ConfigError
from packserve.model_spec import PLATFORMS

# backend name -> "module:class"
BACKENDS: dict[str, str] = {
    "onnxruntime": "packserve.backends.onnxruntime:OnnxRuntimeModel",
    "python": "packserve.backends.python:PythonModel",
    "pytorch": "packserve.backends.pytorch:TorchModel",
    "image": "packserve.backends.image:ImageModel",
    "postprocess": "packserve.backends.postprocess:PostprocessModel",
}


_loaded: dict[str, type[BackendModel]] = {}


def backend_for_platform(platform: str) -> str | None:
    return PLATFORMS.get(platform)


def load_backend(name: str) -> type[BackendModel]:
    """The BackendModel class for a backend name; ConfigError if unknown or not installed."""
    cls = _loaded.get(name)
    if cls is not None:
        return cls
    target = BACKENDS.get(name)
    if target is None:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"unknown backend '{name}' (known: {known})")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"backend '{name}' is not available: {exc}") from exc
    cls = getattr(module, class_name)
    _loaded[name] = cls
    return cls
