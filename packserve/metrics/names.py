"""The one table of metric names, types, help texts and labels.

Triton's names and types are kept exactly (its counters stay counters) so dashboards and alerts
written for Triton work unchanged; the `packserve_` ones are histograms Triton does not have.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MetricKind(enum.Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class MetricSpec:
    # The exposed family name. prometheus_client appends `_total` to counters whose name lacks it,
    # so the observer registers counters under the name Triton exposes, which has no suffix.
    name: str
    kind: MetricKind
    documentation: str
    labels: tuple[str, ...]


MODEL_LABELS = ("model", "version")
GPU_LABELS = ("gpu_uuid",)

# Per-model request metrics (fed by InferenceObserver).
REQUEST_SUCCESS = MetricSpec(
    "nv_inference_request_success", MetricKind.COUNTER,
    "Number of successful inference requests, all batch sizes", MODEL_LABELS,
)
# Triton's failure reasons; each model's series starts with all of them at 0, so a dashboard
# shows 0 (not "no data") before the first failure.
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")
REQUEST_FAILURE = MetricSpec(
    "nv_inference_request_failure", MetricKind.COUNTER,
    "Number of failed inference requests, all batch sizes", (*MODEL_LABELS, "reason"),
)
INFERENCE_COUNT = MetricSpec(
    "nv_inference_count", MetricKind.COUNTER,
    "Number of inferences performed (a batch of n counts n)", MODEL_LABELS,
)
EXECUTION_COUNT = MetricSpec(
    "nv_inference_exec_count", MetricKind.COUNTER,
    "Number of model executions performed (a batch counts once)", MODEL_LABELS,
)
REQUEST_DURATION_US = MetricSpec(
    "nv_inference_request_duration_us", MetricKind.COUNTER,
    "Cumulative inference request duration in microseconds", MODEL_LABELS,
)
QUEUE_DURATION_US = MetricSpec(
    "nv_inference_queue_duration_us", MetricKind.COUNTER,
    "Cumulative inference queuing duration in microseconds", MODEL_LABELS,
)
COMPUTE_INPUT_DURATION_US = MetricSpec(
    "nv_inference_compute_input_duration_us", MetricKind.COUNTER,
    "Cumulative compute input duration in microseconds", MODEL_LABELS,
)
COMPUTE_INFER_DURATION_US = MetricSpec(
    "nv_inference_compute_infer_duration_us", MetricKind.COUNTER,
    "Cumulative compute inference duration in microseconds", MODEL_LABELS,
)
COMPUTE_OUTPUT_DURATION_US = MetricSpec(
    "nv_inference_compute_output_duration_us", MetricKind.COUNTER,
    "Cumulative inference compute output duration in microseconds", MODEL_LABELS,
)
PENDING_REQUEST_COUNT = MetricSpec(
    "nv_inference_pending_request_count", MetricKind.GAUGE,
    "Instantaneous number of pending requests awaiting execution per-model", MODEL_LABELS,
)
MODEL_LOAD_DURATION_SECS = MetricSpec(
    "nv_model_load_duration_secs", MetricKind.GAUGE,
    "Model load time in seconds", MODEL_LABELS,
)
REQUEST_LATENCY_SECONDS = MetricSpec(
    "packserve_request_latency_seconds", MetricKind.HISTOGRAM,
    "End-to-end latency of successful requests inside the server, in seconds", MODEL_LABELS,
)
BATCH_SIZE = MetricSpec(
    "packserve_batch_size", MetricKind.HISTOGRAM,
    "Rows per model execution", MODEL_LABELS,
)

# Host and GPU metrics (read on each scrape).
CPU_UTILIZATION = MetricSpec(
    "nv_cpu_utilization", MetricKind.GAUGE, "CPU utilization rate [0.0 - 1.0]", (),
)
CPU_MEMORY_TOTAL_BYTES = MetricSpec(
    "nv_cpu_memory_total_bytes", MetricKind.GAUGE, "CPU total memory (RAM), in bytes", (),
)
CPU_MEMORY_USED_BYTES = MetricSpec(
    "nv_cpu_memory_used_bytes", MetricKind.GAUGE, "CPU used memory (RAM), in bytes", (),
)
GPU_UTILIZATION = MetricSpec(
    "nv_gpu_utilization", MetricKind.GAUGE, "GPU utilization rate [0.0 - 1.0)", GPU_LABELS,
)
GPU_MEMORY_TOTAL_BYTES = MetricSpec(
    "nv_gpu_memory_total_bytes", MetricKind.GAUGE, "GPU total memory, in bytes", GPU_LABELS,
)
GPU_MEMORY_USED_BYTES = MetricSpec(
    "nv_gpu_memory_used_bytes", MetricKind.GAUGE, "GPU used memory, in bytes", GPU_LABELS,
)
GPU_POWER_USAGE = MetricSpec(
    "nv_gpu_power_usage", MetricKind.GAUGE, "GPU power usage in watts", GPU_LABELS,
)

# Buckets: latency from 0.5 ms (a tiny CPU model) to 30 s (a request stuck behind a long queue);
# batch sizes as powers of two up to Triton's usual max_batch_size range.
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

# Response cache, per model (exported only for models whose cache has been used, as in Triton).
CACHE_NUM_HITS = MetricSpec(
    "nv_cache_num_hits_per_model", MetricKind.COUNTER, "Number of cache hits per model", MODEL_LABELS,
)
CACHE_HIT_DURATION_US = MetricSpec(
    "nv_cache_hit_duration_per_model", MetricKind.COUNTER,
    "Total cache hit duration per model, in microseconds", MODEL_LABELS,
)
CACHE_NUM_MISSES = MetricSpec(
    "nv_cache_num_misses_per_model", MetricKind.COUNTER, "Number of cache misses per model", MODEL_LABELS,
)
CACHE_MISS_DURATION_US = MetricSpec(
    "nv_cache_miss_duration_per_model", MetricKind.COUNTER,
    "Total cache miss (lookup and insertion) duration per model, in microseconds", MODEL_LABELS,
)
CACHE_METRICS = (CACHE_NUM_HITS, CACHE_HIT_DURATION_US, CACHE_NUM_MISSES, CACHE_MISS_DURATION_US)

ALL_METRICS: tuple[MetricSpec, ...] = (
    REQUEST_SUCCESS, REQUEST_FAILURE, INFERENCE_COUNT, EXECUTION_COUNT, REQUEST_DURATION_US,
    QUEUE_DURATION_US, COMPUTE_INPUT_DURATION_US, COMPUTE_INFER_DURATION_US,
    COMPUTE_OUTPUT_DURATION_US, PENDING_REQUEST_COUNT, MODEL_LOAD_DURATION_SECS,
    REQUEST_LATENCY_SECONDS, BATCH_SIZE, CPU_UTILIZATION, CPU_MEMORY_TOTAL_BYTES,
    CPU_MEMORY_USED_BYTES, GPU_UTILIZATION, GPU_MEMORY_TOTAL_BYTES, GPU_MEMORY_USED_BYTES,
    GPU_POWER_USAGE,
)
