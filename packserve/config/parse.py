"""Read a model configuration into tritonclient's generated `ModelConfig` protobuf.

Three spellings of the same schema are accepted in a model folder: `config.pbtxt` (protobuf text
format, what Triton reads), `config.yaml` / `config.yml` and `config.json` (a mapping with the proto
field names, parsed with `json_format.ParseDict`). The repository load API's override
(`{"parameters": {"config": "<json>"}}`) is parsed by `parse_config_json`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format, text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

from packserve.errors import ConfigError

PBTXT_NAME = "config.pbtxt"
YAML_NAMES = ("config.yaml", "config.yml")
JSON_NAME = "config.json"
CONFIG_FILE_NAMES = (PBTXT_NAME, *YAML_NAMES, JSON_NAME)


def find_config_file(model_dir: Path, config_name: str = "") -> Path | None:
    """The one config file in `model_dir`, or None when there is none (auto-complete fills it).

    `config_name` is Triton's --model-config-name: `configs/<name>.pbtxt` wins where it exists,
    the folder's own config file is the fallback."""
    if config_name:
        custom = model_dir / "configs" / f"{config_name}.pbtxt"
        if custom.is_file():
            return custom
    present = [model_dir / name for name in CONFIG_FILE_NAMES if (model_dir / name).is_file()]
    if len(present) > 1:
        names = ", ".join(path.name for path in present)
        raise ConfigError(f"model folder '{model_dir}' holds several config files ({names}); keep one")
    return present[0] if present else None


def parse_model_config(model_dir: Path, config_name: str = "") -> ModelConfig:
    """The config found in `model_dir`; an empty `ModelConfig` when the folder has no config file."""
    path = find_config_file(model_dir, config_name)
    if path is None:
        return ModelConfig()
    return parse_config_file(path)


def parse_config_file(path: Path) -> ModelConfig:
    """Parse one config file, choosing the format from its name."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read model config '{path}': {exc}") from exc
    if path.name == PBTXT_NAME or path.parent.name == "configs":  # configs/<name>.pbtxt
        return parse_config_text(text, source=str(path))
    if path.name in YAML_NAMES:
        return parse_config_yaml(text, source=str(path))
    if path.name == JSON_NAME:
        return parse_config_json(text, source=str(path))
    raise ConfigError(f"unknown model config file '{path}' (expected one of {', '.join(CONFIG_FILE_NAMES)})")


def parse_config_text(text: str, source: str = PBTXT_NAME) -> ModelConfig:
    """Protobuf text format, as in Triton's `config.pbtxt`."""
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"cannot parse model config '{source}': {exc}") from exc
    return config


def parse_config_yaml(text: str, source: str = "config.yaml") -> ModelConfig:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse model config '{source}': {exc}") from exc
    return parse_config_mapping(document, source)


def parse_config_json(text: str, source: str = "config override") -> ModelConfig:
    """A JSON document with the proto field names, e.g. the load API's config override."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"cannot parse model config '{source}': {exc}") from exc
    return parse_config_mapping(document, source)


def parse_config_mapping(document: Any, source: str) -> ModelConfig:
    """A loaded YAML/JSON document -> ModelConfig. An empty document is an empty config."""
    if document is None:
        return ModelConfig()
    if not isinstance(document, Mapping):
        raise ConfigError(
            f"cannot parse model config '{source}': expected a mapping of config fields, "
            f"got {type(document).__name__}"
        )
    config = ModelConfig()
    try:
        json_format.ParseDict(document, config)
    except json_format.ParseError as exc:
        raise ConfigError(f"cannot parse model config '{source}': {exc}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        # ParseDict lets a few malformed values (a YAML date, a nested list where a scalar belongs)
        # escape as plain Python errors; they are still a config the user must fix.
        raise ConfigError(f"cannot parse model config '{source}': {exc}") from exc
    return config
