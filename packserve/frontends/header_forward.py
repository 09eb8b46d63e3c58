"""Triton's --http-header-forward-pattern / --grpc-header-forward-pattern: request headers (gRPC
metadata) whose name matches the pattern become string request parameters, which models read (a
python model through `request.parameters()`), as in Triton. A parameter the request sets itself
wins over a header of the same name. Names are matched case-insensitively, anywhere in the name.

Configured once at startup by the CLI (process-wide, like the log settings).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_http: re.Pattern[str] | None = None
_grpc: re.Pattern[str] | None = None


def configure(http_pattern: str = "", grpc_pattern: str = "") -> None:
    global _http, _grpc
    _http = compile_pattern(http_pattern, "--http-header-forward-pattern")
    _grpc = compile_pattern(grpc_pattern, "--grpc-header-forward-pattern")


def compile_pattern(pattern: str, flag: str) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"{flag}: '{pattern}' is not a regular expression: {exc}") from None


def http_enabled() -> bool:
    return _http is not None


def grpc_enabled() -> bool:
    return _grpc is not None


def _matching(pattern: re.Pattern[str] | None, pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    if pattern is None:
        return {}
    return {name: value for name, value in pairs if pattern.search(name)}


def from_http(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    return _matching(_http, ((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers))


def from_grpc(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    # Binary metadata ("-bin" keys) are bytes, not text: they are not forwarded.
    pairs = ((k, v) for k, v in (metadata or ()) if isinstance(v, str))
    return _matching(_grpc, pairs)


def merge(parameters: dict[str, object], forwarded: dict[str, str]) -> None:
    for name, value in forwarded.items():
        parameters.setdefault(name, value)
