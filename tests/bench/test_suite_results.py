"""Ratio math, the JSON of a run, the report table and the plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from bench.suite.report import plot_results, print_report
from bench.suite.results import (
    FailedRun,
    RawLimit,
    RawPoint,
    ServedPoint,
    ServerSideStats,
    SuiteResults,
    served_ratio,
    write_json,
)


def _served(
    model: str, protocol: str, concurrency: int, rows_per_s: float, mode: str = "stable"
) -> ServedPoint:
    server = ServerSideStats(100, 25, 100, 900.0, 100.0, 500.0, 50.0, 200.0, 50.0)
    return ServedPoint(model, protocol, concurrency, rows_per_s, 1000, 1500, 1800, 2500, 1100, server, mode)


def _results() -> SuiteResults:
    results = SuiteResults(settings={"models": ["simple", "image_classifier"]}, environment={"cpus": 2})
    results.raw["simple"] = RawLimit(
        "simple", "onnxruntime", 2, (RawPoint(1, 5000.0, 10, 0.2), RawPoint(4, 20000.0, 10, 0.2))
    )
    results.raw_skipped["simple_ensemble"] = "ensemble: its steps are other models, measure those"
    for protocol in ("http", "grpc"):
        for concurrency, rows in ((1, 500.0), (8, 2000.0), (32, 2500.0)):
            results.served.append(_served("simple", protocol, concurrency, rows))
    results.served.append(_served("image_classifier", "grpc", 8, 90.0, mode="request_count"))
    results.failed.append(FailedRun("image_classifier", "http", 8, "perf_analyzer exited 1: unstable"))
    return results


def test_ratio_is_served_over_the_best_raw_batch() -> None:
    results = _results()
    assert results.raw["simple"].best.batch_size == 4
    assert results.ratio(results.served_for("simple", "grpc")[1]) == pytest.approx(2000.0 / 20000.0)
    # No raw limit for the model: no ratio rather than a made-up one.
    assert results.ratio(results.served_for("image_classifier", "grpc")[0]) is None


@pytest.mark.parametrize(("served", "raw"), [(10.0, 0.0), (10.0, -1.0), (10.0, math.inf), (math.nan, 5.0)])
def test_ratio_without_a_usable_limit_is_none(served: float, raw: float) -> None:
    assert served_ratio(served, raw) is None


def test_served_points_are_sorted_by_concurrency() -> None:
    results = _results()
    results.served.reverse()
    assert [p.concurrency for p in results.served_for("simple", "http")] == [1, 8, 32]


def test_json_holds_every_figure(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_json(_results(), path)
    data = json.loads(path.read_text())
    assert data["raw"]["simple"]["best"]["rows_per_s"] == 20000.0
    assert len(data["raw"]["simple"]["points"]) == 2
    assert data["raw_skipped"] == {"simple_ensemble": "ensemble: its steps are other models, measure those"}
    first = data["served"][0]
    assert first["ratio_to_raw"] == pytest.approx(500.0 / 20000.0)
    assert first["server_avg_batch_size"] == 4.0
    assert first["server"]["queue_us"] == 500.0
    assert data["served"][-1]["mode"] == "request_count" and data["served"][-1]["ratio_to_raw"] is None
    assert data["failed"][0]["reason"].endswith("unstable")


def test_report_prints_ratios_failures_and_fallbacks() -> None:
    console = Console(record=True, width=200)
    print_report(_results(), console)
    text = console.export_text()
    assert "10.0%" in text  # 2000 / 20000 at concurrency 8
    assert "90.0*" in text and "fixed request count" in text
    assert "no figures for image_classifier over http at concurrency 8" in text
    assert "ensemble" in text


def test_plots_are_written_per_model(tmp_path: Path) -> None:
    written = plot_results(_results(), tmp_path)
    names = sorted(path.name for path in written)
    assert names == [
        "latency_image_classifier.png",
        "latency_simple.png",
        "throughput_image_classifier.png",
        "throughput_simple.png",
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
