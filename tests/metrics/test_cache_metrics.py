"""Response-cache metrics under Triton's names, only once a model's cache is used."""

from __future__ import annotations

from prometheus_client.registry import CollectorRegistry

from packserve.messages import RequestTiming
from packserve.metrics import PrometheusObserver
from packserve.metrics.exposition import render


def test_cache_series_appear_once_used_with_tritons_names() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    observer.model_loaded("m", "1", 0.1)
    assert b"nv_cache_" not in render(registry)
    observer.cache_hit("m", "1", RequestTiming(received_ns=0, completed_ns=5_000, cache_ns=2_000))
    observer.cache_miss("m", "1", 3_000)
    text = render(registry).decode()
    assert 'nv_cache_num_hits_per_model{model="m",version="1"} 1' in text
    assert 'nv_cache_hit_duration_per_model{model="m",version="1"} 2' in text
    assert 'nv_cache_num_misses_per_model{model="m",version="1"} 1' in text
    assert 'nv_cache_miss_duration_per_model{model="m",version="1"} 3' in text
    # A hit is a successful request, as Triton counts it.
    assert 'nv_inference_request_success{model="m",version="1"} 1' in text
