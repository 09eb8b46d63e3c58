"""PrometheusObserver fed with timing records, read back through the text exposition."""

from __future__ import annotations

from prometheus_client.core import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from packserve.messages import RequestTiming
from packserve.metrics import PrometheusObserver, names
from packserve.metrics.exposition import render

_MS = 1_000_000


def _timing(queue_ms: int, input_ms: int, infer_ms: int, output_ms: int, tail_ms: int = 1) -> RequestTiming:
    timing = RequestTiming(received_ns=1_000 * _MS, queue_start_ns=1_000 * _MS)
    timing.compute_start_ns = timing.queue_start_ns + queue_ms * _MS
    timing.compute_input_end_ns = timing.compute_start_ns + input_ms * _MS
    timing.compute_infer_end_ns = timing.compute_input_end_ns + infer_ms * _MS
    timing.compute_end_ns = timing.compute_infer_end_ns + output_ms * _MS
    timing.completed_ns = timing.compute_end_ns + tail_ms * _MS
    return timing


def _scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(render(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _model(model: str = "simple", version: str = "1", **extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"model": model, "version": version, **extra}.items()))


def test_counters_move_by_exactly_the_requests_observed() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    for _ in range(3):
        observer.execution_finished("simple", "1", 4, _timing(2, 1, 5, 1))
        observer.request_finished("simple", "1", _timing(2, 1, 5, 1), None)
    observer.request_finished("simple", "1", _timing(0, 0, 0, 0), "REJECTED")
    observer.request_finished("simple", "1", _timing(0, 0, 0, 0), "BACKEND")
    observer.request_finished("simple", "1", _timing(0, 0, 0, 0), "BACKEND")
    observer.request_finished("other", "2", _timing(1, 1, 1, 1), None)

    scraped = _scrape(registry)
    # The parser reports counters under `<name>_total`; the exposition itself uses Triton's bare names.
    assert scraped[("nv_inference_request_success_total", _model())] == 3
    assert scraped[("nv_inference_request_success_total", _model("other", "2"))] == 1
    assert scraped[("nv_inference_request_failure_total", _model(reason="REJECTED"))] == 1
    assert scraped[("nv_inference_request_failure_total", _model(reason="BACKEND"))] == 2
    assert scraped[("nv_inference_count_total", _model())] == 12
    assert scraped[("nv_inference_exec_count_total", _model())] == 3
    # Durations: only successful requests, in microseconds.
    assert scraped[("nv_inference_request_duration_us_total", _model())] == 3 * 10_000
    assert scraped[("nv_inference_queue_duration_us_total", _model())] == 3 * 2_000
    assert scraped[("nv_inference_compute_input_duration_us_total", _model())] == 3 * 1_000
    assert scraped[("nv_inference_compute_infer_duration_us_total", _model())] == 3 * 5_000
    assert scraped[("nv_inference_compute_output_duration_us_total", _model())] == 3 * 1_000
    # Histograms: latency of successful requests (10 ms each), batch size per execution.
    assert scraped[("packserve_request_latency_seconds_count", _model())] == 3
    assert abs(scraped[("packserve_request_latency_seconds_sum", _model())] - 0.030) < 1e-9
    assert scraped[("packserve_request_latency_seconds_bucket", _model(le="0.005"))] == 0
    assert scraped[("packserve_request_latency_seconds_bucket", _model(le="0.01"))] == 3
    assert scraped[("packserve_batch_size_bucket", _model(le="2.0"))] == 0
    assert scraped[("packserve_batch_size_bucket", _model(le="4.0"))] == 3
    assert scraped[("packserve_batch_size_count", _model())] == 3
    assert scraped[("packserve_batch_size_sum", _model())] == 12


def test_exposition_uses_triton_names_and_types() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    observer.request_finished("simple", "1", _timing(1, 1, 1, 1), None)
    text = render(registry).decode()
    assert "# TYPE nv_inference_request_success counter\n" in text
    assert 'nv_inference_request_success{model="simple",version="1"} 1.0\n' in text
    assert "_total" not in text
    assert "_created" not in text
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for spec in names.ALL_METRICS:
        if spec.labels and spec.labels[0] == "model":
            assert families[spec.name] == spec.kind.value


def test_gauges_follow_queue_and_model_lifecycle() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    observer.model_loaded("simple", "1", 1.5)
    observer.queue_size_changed("simple", "1", 7)
    observer.queue_size_changed("simple", "1", 3)
    scraped = _scrape(registry)
    assert scraped[("nv_model_load_duration_secs", _model())] == 1.5
    assert scraped[("nv_inference_pending_request_count", _model())] == 3
    observer.model_unloaded("simple", "1")
    scraped = _scrape(registry)
    assert ("nv_model_load_duration_secs", _model()) not in scraped
    assert ("nv_inference_pending_request_count", _model()) not in scraped


def test_registries_are_independent() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    PrometheusObserver(first).request_finished("a", "1", _timing(1, 1, 1, 1), None)
    PrometheusObserver(second)
    assert ("nv_inference_request_success_total", _model("a")) in _scrape(first)
    assert ("nv_inference_request_success_total", _model("a")) not in _scrape(second)


def test_label_values_are_escaped() -> None:
    registry = CollectorRegistry()
    PrometheusObserver(registry).request_finished('we"ird\\name', "1", _timing(1, 1, 1, 1), None)
    assert ("nv_inference_request_success_total", _model('we"ird\\name')) in _scrape(registry)
