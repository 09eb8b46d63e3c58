"""A ModelConfig in the JSON form Triton serves at `GET /v2/models/<model>/config`.

Triton prints the proto with its field names and every field without presence (scalars, lists,
maps) at its default; enums are names. protobuf's JSON mapping writes 64-bit integers as strings,
which Triton turns back into numbers; so does `config_to_json`, driven by each field's declared
type rather than by what a string looks like. Map keys stay strings: JSON allows nothing else.
"""

from __future__ import annotations

import inspect
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from tritonclient.grpc.model_config_pb2 import ModelConfig

_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)

# protobuf 26 renamed the option that prints fields at their defaults.
_PRINT_DEFAULTS_OPTION = (
    "always_print_fields_with_no_presence"
    if "always_print_fields_with_no_presence" in inspect.signature(json_format.MessageToDict).parameters
    else "including_default_value_fields"
)


def config_to_json(config: ModelConfig) -> dict[str, Any]:
    """The config as Triton's JSON: proto field names, defaults filled in, int64 as numbers, and
    fields in declaration order as Triton prints them."""
    document: dict[str, Any] = json_format.MessageToDict(
        config, preserving_proto_field_name=True, **{_PRINT_DEFAULTS_OPTION: True}
    )
    return _fix_message(document, config.DESCRIPTOR)


def _fix_message(document: dict[str, Any], descriptor: Descriptor) -> dict[str, Any]:
    """`document` rebuilt in field declaration order with 64-bit integers as numbers."""
    fixed: dict[str, Any] = {}
    for field in descriptor.fields:
        if field.name not in document:
            continue
        value = document[field.name]
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            fixed[field.name] = {key: _fix_value(value_field, item) for key, item in value.items()}
        elif _is_repeated(field):
            fixed[field.name] = [_fix_value(field, item) for item in value]
        else:
            fixed[field.name] = _fix_value(field, value)
    return fixed


def _fix_value(field: FieldDescriptor, value: Any) -> Any:
    if field.type in _INT64_TYPES:
        return int(value)
    if field.type == FieldDescriptor.TYPE_MESSAGE and isinstance(value, dict):
        return _fix_message(value, field.message_type)
    return value


def _is_map(field: FieldDescriptor) -> bool:
    return (
        field.type == FieldDescriptor.TYPE_MESSAGE
        and _is_repeated(field)
        and field.message_type.GetOptions().map_entry
    )


def _is_repeated(field: FieldDescriptor) -> bool:
    # protobuf >= 6 has is_repeated and deprecates label; protobuf 4 has only label.
    is_repeated = getattr(field, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated() if callable(is_repeated) else is_repeated)
    return bool(field.label == FieldDescriptor.LABEL_REPEATED)
