"""Scaling on a metric that exists: the HPA, the prometheus-adapter rule that makes its metric, and
a KEDA ScaledObject as the alternative for clusters that run KEDA instead of the adapter.

The metric is the mean time a request waits in packserve's queues, per pod:
rate(nv_inference_queue_duration_us) / rate(nv_inference_request_success). The adapter turns the
counters Prometheus scrapes into `packserve_queue_duration_us_per_request` on each pod, which the
HPA (autoscaling/v2, type Pods) averages over the Deployment's pods.
"""

from __future__ import annotations

import math
from typing import Any

from packserve.planning.formats.plan_schema import Plan, PodPlan

Manifest = dict[str, Any]

QUEUE_METRIC = "packserve_queue_duration_us_per_request"
RATE_WINDOW = "1m"
SCALE_DOWN_WINDOW_S = 300
# The adapter's query template: it fills <<.LabelMatchers>> with the pod (and namespace) it is
# asked about and <<.GroupBy>> with `pod`. clamp_min: an idle pod waits 0 us, not 0/0.
ADAPTER_QUERY = (
    "sum by (<<.GroupBy>>) (rate(nv_inference_queue_duration_us{<<.LabelMatchers>>}"
    f"[{RATE_WINDOW}]))"
    " / clamp_min(sum by (<<.GroupBy>>) (rate(nv_inference_request_success{<<.LabelMatchers>>}"
    f"[{RATE_WINDOW}])), 1e-9)"
)


def render_adapter_query(label_matchers: str, group_by: str) -> str:
    """The PromQL the adapter sends for one metric request (what tests evaluate as written)."""
    return ADAPTER_QUERY.replace("<<.LabelMatchers>>", label_matchers).replace("<<.GroupBy>>", group_by)


def replica_range(plan: Plan, pod: PodPlan, minimum: int | None, maximum: int | None) -> tuple[int, int]:
    """(min, max): enough pods for the average load, as many as the plan needs at its peak.
    The plan sized `pod.replicas` for average x peak_factor; the base load needs that / factor."""
    base = max(1, math.ceil(pod.replicas / max(1.0, plan.peak_factor)))
    low = minimum if minimum is not None else base
    high = maximum if maximum is not None else max(pod.replicas, low)
    return low, max(low, high)


def queue_target_us(pod: PodPlan) -> int:
    # Scale before the queue eats the latency budget: target half the tightest model's queue share.
    return max(1000, int(min(m.budget_ms - m.batch_latency_ms for m in pod.models) * 500))


def hpa(pod: PodPlan, meta: dict[str, Any], replicas: tuple[int, int]) -> Manifest:
    low, high = replicas
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"]},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": QUEUE_METRIC},
                        "target": {"type": "AverageValue", "averageValue": str(queue_target_us(pod))},
                    },
                }
            ],
            # Up at once, down only after the load has stayed low for five minutes.
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0},
                "scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_WINDOW_S},
            },
        },
    }


def adapter_values() -> dict[str, Any]:
    """Helm values for prometheus-community/prometheus-adapter (the list under `rules.custom` is
    also what a hand-written adapter config takes as its `rules:`)."""
    rule = {
        "seriesQuery": 'nv_inference_queue_duration_us{namespace!="",pod!=""}',
        "resources": {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}},
        "name": {"matches": "^nv_inference_queue_duration_us$", "as": QUEUE_METRIC},
        "metricsQuery": ADAPTER_QUERY,
    }
    return {"rules": {"custom": [rule]}}


def keda_scaled_object(
    pod: PodPlan, meta: dict[str, Any], replicas: tuple[int, int], prometheus_url: str
) -> Manifest:
    """The same signal through KEDA's Prometheus scaler: the Deployment's mean queue time."""
    matchers = f'namespace="{meta["namespace"]}",service="{meta["name"]}"'
    query = render_adapter_query(matchers, "service")
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"name": meta["name"]},
            "minReplicaCount": replicas[0],
            "maxReplicaCount": replicas[1],
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_WINDOW_S}}
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": "Value",
                    "metadata": {
                        "serverAddress": prometheus_url,
                        "query": query,
                        "threshold": str(queue_target_us(pod)),
                    },
                }
            ],
        },
    }
