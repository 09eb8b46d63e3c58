"""Reading a request's JSON under the depth limit, and the typed checks of its parameters.

Every refusal is an InvalidArgumentError naming the field. Runs on the event loop.
"""

from __future__ import annotations

from typing import Any

import orjson

from packserve.errors import InvalidArgumentError


def parse_json(body: bytes, end: int, max_depth: int) -> Any:
    try:
        parsed = orjson.loads(memoryview(body)[:end] if end != len(body) else body)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgumentError(f"failed to parse the request JSON: {exc}") from None
    # Fast path: with no more opening brackets than the limit, no nesting can exceed it.
    if body.count(b"[", 0, end) + body.count(b"{", 0, end) > max_depth:
        check_depth(parsed, max_depth)
    return parsed


def check_depth(root: Any, max_depth: int) -> None:
    """Refuse JSON nested deeper than max_depth. orjson already stops at 1024 levels; this walks
    the (small) structure iteratively, skipping the bulk of tensor `data` lists, which numpy bounds
    and `tensor_from_json` checks along their first elements."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise InvalidArgumentError(f"request JSON is nested deeper than {max_depth} levels")
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "data" and isinstance(value, list):
                    continue
                if isinstance(value, (dict, list)):
                    stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node if isinstance(item, (dict, list)))


def checked_parameters(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgumentError(f"{where} 'parameters' must be a JSON object")
    for key, value in raw.items():
        if not isinstance(value, (bool, int, float, str)):
            raise InvalidArgumentError(
                f"{where} parameter '{key}' must be a bool, number or string, got {type(value).__name__}"
            )
    return dict(raw)


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"parameter '{name}' must be a bool, got {value!r}")
    return value


def non_negative_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgumentError(f"parameter '{name}' must be a non-negative integer, got {value!r}")
    return value
