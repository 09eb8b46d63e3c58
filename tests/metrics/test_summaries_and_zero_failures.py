"""Failure counters start at 0 per reason; optional latency summaries with Triton's names."""

from __future__ import annotations

import pytest
import typer
from prometheus_client.registry import CollectorRegistry

from packserve.cli.triton_flags import summary_quantiles
from packserve.messages import RequestTiming
from packserve.metrics import PrometheusObserver
from packserve.metrics.exposition import render
from packserve.metrics.summaries import LatencySummaries


def _timing(total_us: int, queue_us: int) -> RequestTiming:
    return RequestTiming(
        received_ns=0, queue_start_ns=0, compute_start_ns=queue_us * 1000, compute_input_end_ns=queue_us * 1000,
        compute_infer_end_ns=total_us * 1000, compute_end_ns=total_us * 1000, completed_ns=total_us * 1000,
    )  # fmt: skip


def test_failure_counters_exist_at_zero_once_a_model_loads() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    observer.model_loaded("m", "1", 0.5)
    text = render(registry).decode()
    for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER"):
        assert f'nv_inference_request_failure{{model="m",reason="{reason}",version="1"}} 0' in text
    observer.request_finished("m", "1", _timing(10, 1), "BACKEND")
    assert 'nv_inference_request_failure{model="m",reason="BACKEND",version="1"} 1' in render(registry).decode()


def test_latency_summaries() -> None:
    now = [0.0]
    registry = CollectorRegistry()
    summaries = LatencySummaries(registry, (0.5, 0.99), max_age_s=60.0, clock=lambda: now[0])
    for value in range(1, 101):
        summaries.request_finished("m", "1", _timing(value, value // 10), None)
    summaries.request_finished("m", "1", _timing(100000, 0), "BACKEND")  # failures are not observed
    text = render(registry).decode()
    assert "# TYPE nv_inference_request_summary_us summary" in text
    assert 'nv_inference_request_summary_us{model="m",quantile="0.5",version="1"} 50.5' in text
    assert 'nv_inference_request_summary_us_count{model="m",version="1"} 100' in text
    assert 'nv_inference_request_summary_us_sum{model="m",version="1"} 5050.0' in text
    assert 'nv_inference_queue_summary_us{model="m",quantile="0.99",version="1"}' in text
    now[0] = 120.0  # the window has passed: quantiles go, count and sum stay
    text = render(registry).decode()
    assert 'quantile="0.5"' not in text and 'nv_inference_request_summary_us_count{model="m",version="1"} 100' in text


def test_metrics_config_flag() -> None:
    assert summary_quantiles([]) == ()
    assert summary_quantiles(["summary_latencies=true"]) == (0.5, 0.9, 0.95, 0.99)
    assert summary_quantiles(["summary_latencies=true", "summary_quantiles=0.5:0.05,0.999:0.001"]) == (0.5, 0.999)
    with pytest.raises(typer.BadParameter, match="'counter_latencies' is not supported"):
        summary_quantiles(["counter_latencies=false"])
