"""Triton's trace extension: settings (global and per model), sampling, one record per request.

Settings have Triton's names and string forms (`GET /v2/trace/setting` answers
`{"trace_level": ["OFF"], "trace_rate": "1000", "trace_count": "-1", "log_frequency": "0",
"trace_file": "", "trace_mode": "triton"}`). A model's settings start as the global ones; a value
set for the model overrides, and setting it to null goes back to the global value.

Sampling: of the requests a setting covers, one in `trace_rate` is traced while `trace_count`
(-1 = unlimited) is not used up; `trace_count` counts down as in Triton. The steps of a traced
ensemble are traced too, as children of its trace (a contextvar carries the parent), so a trace
shows where a pipeline's time went. Traces go to an exporter (core/trace_export.py).
"""

from __future__ import annotations

import contextvars
import itertools
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from packserve.errors import InvalidArgumentError, TraceSettingRefusedError
from packserve.messages import RequestTiming

LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")
MODES = ("triton", "opentelemetry")
_NUMBERS = ("trace_rate", "trace_count", "log_frequency")
SETTING_NAMES = ("trace_level", *_NUMBERS, "trace_file", "trace_mode")


@dataclass(frozen=True)
class TraceSettings:
    level: tuple[str, ...] = ("OFF",)
    rate: int = 1000
    count: int = -1
    log_frequency: int = 0
    file: str = ""
    mode: str = "triton"
    # opentelemetry mode: where spans go (OTLP over HTTP) and the service name they carry.
    url: str = "http://localhost:4318/v1/traces"
    resource: Mapping[str, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return any(level != "OFF" for level in self.level)

    def as_strings(self) -> dict[str, Any]:
        return {
            "trace_level": list(self.level),
            "trace_rate": str(self.rate),
            "trace_count": str(self.count),
            "log_frequency": str(self.log_frequency),
            "trace_file": self.file,
            "trace_mode": self.mode,
        }


@dataclass
class TraceRecord:
    """One traced request; `parent` is the ensemble request it is a step of."""

    id: int
    trace_id: str  # 32 hex digits (OpenTelemetry's trace id), shared by a pipeline's records
    span_id: str  # 16 hex digits
    parent: TraceRecord | None
    model: str = ""
    version: str = ""
    request_id: str = ""
    timing: RequestTiming | None = None
    error: str | None = None
    tensors: dict[str, str] = field(default_factory=dict)  # TENSORS level: name -> "DTYPE[shape]"
    token: Any = None  # restores the caller's current trace when this request ends


class TraceExporter(Protocol):
    def export(self, record: TraceRecord, settings: TraceSettings) -> None: ...

    def close(self) -> None: ...


_CURRENT: contextvars.ContextVar[TraceRecord | None] = contextvars.ContextVar("packserve_trace", default=None)


def parse_level(values: Sequence[str]) -> tuple[str, ...]:
    levels = tuple(str(v).upper() for v in values)
    unknown = [v for v in levels if v not in LEVELS]
    if unknown:
        raise InvalidArgumentError(
            f"Unable to parse 'trace_level', got: {unknown[0]} (one of {', '.join(LEVELS)})"
        )
    on = tuple(v for v in levels if v != "OFF")
    return on or ("OFF",)


def parse_number(name: str, text: str) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"Unable to parse '{name}', got: {text}") from None
    if name == "trace_count" and value < -1:
        raise InvalidArgumentError(f"Unable to parse 'trace_count'. Expecting value >= -1, got:{value}")
    if name != "trace_count" and value < 0:
        raise InvalidArgumentError(f"Unable to parse '{name}'. Expecting value >= 0, got:{value}")
    return value


def apply(settings: TraceSettings, changes: Mapping[str, Any], base: TraceSettings) -> TraceSettings:
    """`settings` with `changes` (Triton's JSON form) applied; a null value takes `base`'s."""
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in SETTING_NAMES:
            raise InvalidArgumentError(f"unknown trace setting '{name}' (one of {', '.join(SETTING_NAMES)})")
        if name == "trace_file":
            raise TraceSettingRefusedError("trace file location can not be updated through network protocol")
        if name == "trace_mode":
            raise TraceSettingRefusedError("trace mode can not be updated through network protocol")
        key = {"trace_level": "level", "trace_rate": "rate", "trace_count": "count"}.get(name, name)
        if value is None:
            values[key] = getattr(base, key)
        elif name == "trace_level":
            if not isinstance(value, list):
                raise InvalidArgumentError("'trace_level' must be an array of strings")
            values[key] = parse_level(value)
        else:
            if not isinstance(value, str):
                raise InvalidArgumentError(f"'{name}' must be a string (Triton's form), got {value!r}")
            values[key] = parse_number(name, value)
    updated = replace(settings, **values)
    check(updated)
    return updated


def check(settings: TraceSettings) -> None:
    if not settings.enabled:
        return
    if settings.mode == "triton" and not settings.file:
        raise InvalidArgumentError("Attempting to set invalid trace setting :trace file name is not given")
    if settings.rate == 0:
        raise InvalidArgumentError("Attempting to set invalid trace setting :sample rate must be non-zero")


class TraceControl:
    """The settings and the sampler. Runs on the event loop; the lock guards the settings against
    the front ends' threads (gRPC servicer calls are on the loop too, but keep it simple)."""

    def __init__(self, settings: TraceSettings, exporter: TraceExporter | None = None) -> None:
        check(settings)
        self._global = settings
        self._models: dict[str, dict[str, Any]] = {}  # model -> its own changes (Triton's form)
        self._effective: dict[str, TraceSettings] = {}
        self._seen: dict[str, int] = {}
        self._exporter = exporter
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.any_enabled = settings.enabled

    def settings(self, model: str = "") -> TraceSettings:
        return self._effective.get(model, self._global) if model else self._global

    def update(self, model: str, changes: Mapping[str, Any]) -> TraceSettings:
        with self._lock:
            if not model:
                self._global = apply(self._global, changes, self._global)
                self._refresh_models()
            else:
                own = {**self._models.get(model, {}), **changes}
                own = {k: v for k, v in own.items() if v is not None}
                self._effective[model] = apply(self._global, own, self._global)
                self._models[model] = own
            self.any_enabled = self._global.enabled or any(s.enabled for s in self._effective.values())
            return self.settings(model)

    def begin(self, model: str) -> TraceRecord | None:
        """A record when this request is traced (always when its parent is), else None."""
        parent = _CURRENT.get()
        if parent is None and not self.any_enabled:
            return None
        if parent is None and not self._sample(model):
            return None
        trace_id = parent.trace_id if parent is not None else secrets.token_hex(16)
        record = TraceRecord(next(self._ids), trace_id, secrets.token_hex(8), parent, model)
        record.token = _CURRENT.set(record)
        return record

    def _sample(self, model: str) -> bool:
        with self._lock:
            settings = self.settings(model)
            if not settings.enabled or settings.count == 0:
                return False
            seen = self._seen.get(model, 0)
            self._seen[model] = seen + 1
            if seen % settings.rate != 0:
                return False
            if settings.count > 0:
                self._count_down(model, settings)
            return True

    def _count_down(self, model: str, settings: TraceSettings) -> None:
        remaining = replace(settings, count=settings.count - 1)
        if model in self._effective and "trace_count" in self._models.get(model, {}):
            self._effective[model] = remaining
            self._models[model]["trace_count"] = str(remaining.count)
        else:
            self._global = remaining
            self._refresh_models()

    def _refresh_models(self) -> None:
        # Models follow the global settings except where they set their own.
        for name, own in self._models.items():
            self._effective[name] = apply(self._global, own, self._global)

    def end(self, record: TraceRecord) -> None:
        if record.token is not None:
            _CURRENT.reset(record.token)
            record.token = None
        if self._exporter is not None:
            root = record
            while root.parent is not None:
                root = root.parent
            self._exporter.export(record, self.settings(root.model))

    def close(self) -> None:
        if self._exporter is not None:
            self._exporter.close()


def unknown_model(name: str) -> InvalidArgumentError:
    # Triton answers 400 (not 404) for a trace setting of an unknown model.
    return InvalidArgumentError(f"Request for unknown model : {name}")
