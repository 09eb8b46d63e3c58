"""Triton's `--http-restricted-api` / `--grpc-restricted-protocol`: API categories that answer only
to requests carrying a given header with a given value.

The flag's form is Triton's: `<category>[,<category>...]:<key>=<value>`, given once per rule. Over
HTTP the header is `<key>`; over gRPC it is `triton-grpc-protocol-<key>` (as Triton 2.51 expects).
A refused HTTP request gets 403, a refused gRPC call UNAVAILABLE, both with Triton's words.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

CATEGORIES = (
    "health",
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"

# gRPC method (last part of /inference.GRPCInferenceService/<Method>) -> category.
_GRPC_CATEGORIES = {
    "ServerLive": "health",
    "ServerReady": "health",
    "ModelReady": "health",
    "Check": "health",  # grpc.health.v1.Health
    "Watch": "health",
    "ServerMetadata": "metadata",
    "ModelMetadata": "metadata",
    "ModelInfer": "inference",
    "ModelStreamInfer": "inference",
    "ModelConfig": "model-config",
    "ModelStatistics": "statistics",
    "RepositoryIndex": "model-repository",
    "RepositoryModelLoad": "model-repository",
    "RepositoryModelUnload": "model-repository",
    "SystemSharedMemoryStatus": "shared-memory",
    "SystemSharedMemoryRegister": "shared-memory",
    "SystemSharedMemoryUnregister": "shared-memory",
    "CudaSharedMemoryStatus": "shared-memory",
    "CudaSharedMemoryRegister": "shared-memory",
    "CudaSharedMemoryUnregister": "shared-memory",
    "TraceSetting": "trace",
    "LogSettings": "logging",
}
_HTTP_MODEL_ACTIONS = {
    "": "metadata",
    "ready": "health",
    "config": "model-config",
    "stats": "statistics",
    "infer": "inference",
    "generate": "inference",
    "generate_stream": "inference",
}
_HTTP_SECTIONS = {
    "health": "health",
    "repository": "model-repository",
    "systemsharedmemory": "shared-memory",
    "cudasharedmemory": "shared-memory",
    "trace": "trace",
    "logging": "logging",
    "pipelines": "inference",
}


@dataclass(frozen=True, slots=True)
class Rule:
    key: str  # lower-case header name (without the gRPC prefix)
    value: str


class Restrictions:
    """category -> the header a request of that category must carry. Empty: nothing restricted."""

    def __init__(self, rules: Mapping[str, Rule] | None = None) -> None:
        self.rules = dict(rules or {})

    def __bool__(self) -> bool:
        return bool(self.rules)

    @classmethod
    def parse(cls, specs: Iterable[str], flag: str) -> Restrictions:
        """ValueError naming the flag and the problem for a malformed or overlapping spec."""
        rules: dict[str, Rule] = {}
        for spec in specs:
            categories, sep, header = spec.partition(":")
            key, eq, value = header.partition("=")
            if not sep or not eq or not key.strip() or not categories.strip():
                raise ValueError(f"{flag} '{spec}': expected <category>[,<category>...]:<key>=<value>")
            for category in (c.strip() for c in categories.split(",")):
                if category not in CATEGORIES:
                    raise ValueError(
                        f"{flag} '{spec}': unknown category '{category}' (one of {', '.join(CATEGORIES)})"
                    )
                if category in rules:
                    raise ValueError(f"{flag}: category '{category}' is restricted more than once")
                rules[category] = Rule(key.strip().lower(), value)
        return cls(rules)

    def http_refusal(self, path: str, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
        """None when the request may go on, else the message of its 403."""
        rule = self.rules.get(http_category(path))
        if rule is None:
            return None
        wanted = rule.key.encode("latin-1")
        for name, value in headers:
            if name == wanted and _same(value, rule.value.encode()):
                return None
        return f"This API is restricted, expecting header '{rule.key}'"

    def grpc_refusal(self, method: str, metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
        """None when the call may go on, else the message of its UNAVAILABLE status."""
        rule = self.rules.get(_GRPC_CATEGORIES.get(method.rsplit("/", 1)[-1], ""))
        if rule is None:
            return None
        wanted = GRPC_HEADER_PREFIX + rule.key
        for name, value in metadata:
            if name.lower() == wanted:
                raw = value if isinstance(value, bytes) else value.encode()
                if _same(raw, rule.value.encode()):
                    return None
        return f"This protocol is restricted, expecting header '{wanted}'"


def http_category(path: str) -> str:
    """The category of a /v2/... path ('' when none applies, e.g. an unknown path)."""
    parts = path.strip("/").split("/")
    if not parts or parts[0] != "v2":
        return ""
    if len(parts) == 1:
        return "metadata"
    section = parts[1]
    if section == "models":
        if len(parts) == 3 and parts[2] == "stats":
            return "statistics"
        rest = parts[3:]
        if len(rest) >= 2 and rest[0] == "versions":
            rest = rest[2:]
        return _HTTP_MODEL_ACTIONS.get(rest[0] if rest else "", "")
    return _HTTP_SECTIONS.get(section, "")


def _same(given: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(given, expected)  # a secret: compare in constant time
