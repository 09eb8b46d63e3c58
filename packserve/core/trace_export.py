"""Where traces go: Triton's trace file (mode `triton`) or OpenTelemetry spans over OTLP/HTTP
(mode `opentelemetry`, needs the `trace` extra: opentelemetry-sdk and its OTLP exporter).

The file is Triton's format, a JSON array of entries keyed by trace `id` (`model_name`,
`model_version`, `request_id`, `parent_id` for an ensemble's steps, and `timestamps` named as
Triton names them), so tools written for Triton's trace files read it. With `log_frequency` N > 0
every N traces go to `<trace_file>.<k>` (k = 0, 1, ...); the rest, or all with 0, at shutdown.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from packserve.core.tracing import TraceRecord, TraceSettings

log = logging.getLogger("packserve.trace")

# Triton's timestamp names, from the request's one timing record.
_TIMESTAMPS = (
    ("REQUEST_START", "received_ns"),
    ("QUEUE_START", "queue_start_ns"),
    ("COMPUTE_START", "compute_start_ns"),
    ("COMPUTE_INPUT_END", "compute_input_end_ns"),
    ("COMPUTE_OUTPUT_START", "compute_infer_end_ns"),
    ("COMPUTE_END", "compute_end_ns"),
    ("REQUEST_END", "completed_ns"),
)


def timestamps(record: TraceRecord) -> list[tuple[str, int]]:
    timing = record.timing
    if timing is None:
        return []
    stamps = [(name, getattr(timing, attribute)) for name, attribute in _TIMESTAMPS]
    return [(name, ns) for name, ns in stamps if ns]


def file_entries(record: TraceRecord) -> list[dict[str, Any]]:
    head: dict[str, Any] = {"id": record.id, "model_name": record.model}
    head["model_version"] = int(record.version) if record.version.isdigit() else record.version
    if record.request_id:
        head["request_id"] = record.request_id
    if record.parent is not None:
        head["parent_id"] = record.parent.id
    entries = [head, {"id": record.id, "timestamps": [{"name": n, "ns": ns} for n, ns in timestamps(record)]}]
    for name, description in record.tensors.items():
        tensor = {"name": name, "type": description}
        entries.append({"id": record.id, "activity": "TENSOR_QUEUE_INPUT", "tensor": tensor})
    if record.error is not None:
        entries.append({"id": record.id, "error": record.error})
    return entries


class TritonFileExporter:
    def __init__(self) -> None:
        self._pending: list[dict[str, Any]] = []
        self._traces = 0
        self._index = 0
        self._file = ""
        self._lock = threading.Lock()

    def export(self, record: TraceRecord, settings: TraceSettings) -> None:
        with self._lock:
            self._file = settings.file
            self._pending.extend(file_entries(record))
            if record.parent is None:
                self._traces += 1
            if settings.log_frequency > 0 and self._traces >= settings.log_frequency:
                self._write(f"{self._file}.{self._index}")
                self._index += 1

    def _write(self, path: str) -> None:
        entries, self._pending, self._traces = self._pending, [], 0
        try:
            Path(path).write_text(json.dumps(entries), encoding="utf-8")
        except OSError as exc:  # tracing must never fail a request or the shutdown
            log.error("cannot write trace file '%s': %s", path, exc)

    def close(self) -> None:
        with self._lock:
            if self._pending and self._file:
                self._write(f"{self._file}.{self._index}" if self._index else self._file)


class OpenTelemetryExporter:
    """Each record becomes one span (an ensemble step a child of its ensemble's span), with the
    Triton timestamps as span events, sent in batches over OTLP/HTTP."""

    def __init__(self, settings: TraceSettings) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._resource = Resource.create({"service.name": "packserve", **settings.resource})
        self._processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.url))
        # Timings are monotonic; spans want wall-clock nanoseconds.
        self._offset_ns = time.time_ns() - time.monotonic_ns()

    def export(self, record: TraceRecord, settings: TraceSettings) -> None:
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        def context(of: TraceRecord) -> SpanContext:
            sampled = TraceFlags(TraceFlags.SAMPLED)
            return SpanContext(int(of.trace_id, 16), int(of.span_id, 16), False, sampled)

        stamps = timestamps(record)
        if not stamps:
            return
        wall = [(name, ns + self._offset_ns) for name, ns in stamps]
        attributes: dict[str, Any] = {
            "triton.model_name": record.model,
            "triton.model_version": record.version,
            "triton.request_id": record.request_id,
            **{f"triton.input.{name}": description for name, description in record.tensors.items()},
        }
        status = Status(StatusCode.ERROR, record.error) if record.error else Status(StatusCode.OK)
        span = ReadableSpan(
            name=f"{record.model} inference",
            context=context(record),
            parent=context(record.parent) if record.parent is not None else None,
            resource=self._resource,
            attributes=attributes,
            events=[Event(name, timestamp=ns) for name, ns in wall],
            kind=SpanKind.SERVER if record.parent is None else SpanKind.INTERNAL,
            status=status,
            start_time=wall[0][1],
            end_time=wall[-1][1],
        )
        self._processor.on_end(span)

    def close(self) -> None:
        self._processor.shutdown()


def make_exporter(settings: TraceSettings) -> TritonFileExporter | OpenTelemetryExporter:
    if settings.mode == "opentelemetry":
        return OpenTelemetryExporter(settings)
    return TritonFileExporter()
