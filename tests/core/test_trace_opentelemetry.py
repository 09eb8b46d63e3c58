"""Trace mode opentelemetry: an ensemble request becomes a span with one child span per step,
sent over OTLP/HTTP to a collector (here a loopback HTTP server that decodes what it gets)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest

from packserve.core.engine import Engine, EngineOptions
from packserve.core.tracing import TraceSettings
from packserve.examples.simple_repository import build_simple_repository
from packserve.messages import InferRequest

trace_service_pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")


@pytest.fixture
def collector() -> Iterator[tuple[str, list[bytes]]]:
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", bodies
    server.shutdown()
    thread.join(timeout=10)


async def test_spans_per_request_and_per_step(tmp_path: Path, collector: tuple[str, list[bytes]]) -> None:
    url, bodies = collector
    settings = TraceSettings(level=("TIMESTAMPS",), rate=1, mode="opentelemetry", url=url, resource={"team": "vision"})
    engine = await Engine.start(EngineOptions(build_simple_repository(tmp_path / "repo"), trace=settings))
    data = np.ones((1, 16), np.int32)
    try:
        await engine.infer(InferRequest(model_name="simple_ensemble", model_version="", inputs={"INPUT0": data, "INPUT1": data}, id="p1"))
    finally:
        await engine.shutdown(0)  # flushes the batch of spans
    spans = []
    for body in bodies:
        message = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        for resource_spans in message.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert attributes["service.name"] == "packserve" and attributes["team"] == "vision"
            for scope in resource_spans.scope_spans:
                spans.extend(scope.spans)
    root = next(s for s in spans if s.name == "simple_ensemble inference")
    children = [s for s in spans if s.parent_span_id == root.span_id]
    assert len(spans) == 3 and len(children) == 2
    assert all(c.trace_id == root.trace_id and c.name == "simple inference" for c in children)
    assert root.start_time_unix_nano <= min(c.start_time_unix_nano for c in children)
    assert "COMPUTE_START" in [e.name for e in children[0].events]
