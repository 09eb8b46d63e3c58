"""The Grafana dashboard is importable JSON and queries only metrics packserve exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from packserve.metrics import names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "packserve-dashboard.json"
_METRIC = re.compile(r"\b((?:nv|packserve)_[a-z_]+)")


def _load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _exposed_names() -> set[str]:
    exposed = set()
    for spec in names.ALL_METRICS:
        exposed.add(spec.name)
        if spec.kind is names.MetricKind.HISTOGRAM:
            exposed.update(f"{spec.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return exposed


def test_dashboard_has_the_shape_grafana_imports() -> None:
    dashboard = _load()
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "model"} <= variables


def test_every_query_uses_an_exposed_metric_and_panels_do_not_overlap() -> None:
    exposed = _exposed_names()
    used: set[str] = set()
    cells: set[tuple[int, int]] = set()
    for panel in _load()["panels"]:
        box = panel["gridPos"]
        covered = {
            (x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])
        }
        assert not covered & cells, f"panel '{panel['title']}' overlaps another"
        assert box["x"] + box["w"] <= 24
        cells |= covered
        for target in panel.get("targets", []):
            found = set(_METRIC.findall(target["expr"]))
            assert found, f"panel '{panel['title']}' queries no packserve metric"
            used |= found
    assert used <= exposed, f"unknown metrics: {sorted(used - exposed)}"
    # The panels the dashboard promises: throughput, latency quantiles, queue vs compute, batch size,
    # pending requests and the GPU.
    assert {
        "nv_inference_request_success",
        "packserve_request_latency_seconds_bucket",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "packserve_batch_size_sum",
        "nv_inference_pending_request_count",
        "nv_gpu_utilization",
        "nv_gpu_memory_used_bytes",
    } <= used
