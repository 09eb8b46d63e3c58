"""MetricsServer serves its registry at /metrics over HTTP."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest
from prometheus_client.core import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from packserve.messages import RequestTiming
from packserve.metrics import MetricsServer, PrometheusObserver


def _get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


@pytest.fixture
async def served() -> AsyncIterator[MetricsServer]:
    server = MetricsServer("127.0.0.1", 0)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_metrics_endpoint_serves_model_and_system_metrics(served: MetricsServer) -> None:
    observer = PrometheusObserver(served.registry)
    observer.request_finished("simple", "1", RequestTiming(), None)
    content_type, text = await asyncio.to_thread(_get, f"http://127.0.0.1:{served.port}/metrics")
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["nv_inference_request_success"].samples[0].value == 1
    assert "nv_cpu_memory_total_bytes" in families


async def test_other_paths_are_404_and_stop_releases_the_port(served: MetricsServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        await asyncio.to_thread(_get, f"http://127.0.0.1:{served.port}/")
    assert caught.value.code == 404
    port = served.port
    await served.stop()
    again = MetricsServer("127.0.0.1", port, registry=CollectorRegistry(), system_metrics=False)
    await again.start()
    assert again.port == port
    _, text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
    assert text == ""
    await again.stop()
