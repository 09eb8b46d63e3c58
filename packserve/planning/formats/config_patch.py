"""Applying a planned config patch: to a config.pbtxt on disk, or to a JSON config for the load API.

A patch names top-level ModelConfig fields in Triton's JSON form; each named field is replaced as a
whole (an `instance_group` list replaces the old list rather than appending to it).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from packserve.errors import ConfigError, InvalidArgumentError


def patched_config_json(config: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A full JSON config with the patch's fields replaced: what `Engine.load_model` takes."""
    merged = copy.deepcopy(dict(config))
    for field, value in patch.items():
        merged[field] = copy.deepcopy(value)
    return merged


def patch_pbtxt(text: str, patch: Mapping[str, Any], model: str) -> str:
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"model '{model}': config.pbtxt does not parse: {exc}") from exc
    for field in patch:
        if field not in model_config_pb2.ModelConfig.DESCRIPTOR.fields_by_name:
            raise InvalidArgumentError(f"model '{model}': patch field '{field}' is not a model config field")
        config.ClearField(field)
    try:
        json_format.ParseDict(dict(patch), config)
    except json_format.ParseError as exc:
        raise InvalidArgumentError(f"model '{model}': patch does not fit the model config: {exc}") from exc
    return text_format.MessageToString(config)


def apply_to_repository(repository: Path, patches: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    """Rewrite <repository>/<model>/config.pbtxt for each patched model; returns the files written."""
    written = []
    for model, patch in sorted(patches.items()):
        path = repository / model / "config.pbtxt"
        if not path.is_file():
            raise InvalidArgumentError(f"model '{model}' has no config.pbtxt under {repository}")
        path.write_text(patch_pbtxt(path.read_text(encoding="utf-8"), patch, model), encoding="utf-8")
        written.append(path)
    return written


def load_patches(path: Path) -> dict[str, dict[str, Any]]:
    """{model: config fields} from a patch file (a ConfigMap's config-patch.json) or a plan.json."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidArgumentError(f"patch file '{path}' cannot be read as JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("config_patches"), dict):
        data = data["config_patches"]  # a plan.json written by `packserve plan`
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InvalidArgumentError(f"patch file '{path}' must map model names to config fields")
    return data
