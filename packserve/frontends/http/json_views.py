"""The engine's read-only views as the JSON documents Triton's HTTP endpoints return."""

from __future__ import annotations

from typing import Any

from packserve.core.views import (
    BatchStats,
    DurationStat,
    IndexEntry,
    ModelMetadata,
    ModelStatistics,
    ServerMetadata,
    TensorMetadata,
)


def server_metadata(meta: ServerMetadata) -> dict[str, Any]:
    return {"name": meta.name, "version": meta.version, "extensions": list(meta.extensions)}


def _tensor(tensor: TensorMetadata) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype.wire_name, "shape": list(tensor.shape)}


def model_metadata(meta: ModelMetadata) -> dict[str, Any]:
    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": [_tensor(t) for t in meta.inputs],
        "outputs": [_tensor(t) for t in meta.outputs],
    }


def _duration(stat: DurationStat) -> dict[str, int]:
    return {"count": stat.count, "ns": stat.ns}


def _batch(stat: BatchStats) -> dict[str, Any]:
    return {
        "batch_size": stat.batch_size,
        "compute_input": _duration(stat.compute_input),
        "compute_infer": _duration(stat.compute_infer),
        "compute_output": _duration(stat.compute_output),
    }


def _model_stats(stat: ModelStatistics) -> dict[str, Any]:
    inference = stat.inference_stats
    return {
        "name": stat.name,
        "version": stat.version,
        "last_inference": stat.last_inference_ms,
        "inference_count": stat.inference_count,
        "execution_count": stat.execution_count,
        "inference_stats": {
            "success": _duration(inference.success),
            "fail": _duration(inference.fail),
            "queue": _duration(inference.queue),
            "compute_input": _duration(inference.compute_input),
            "compute_infer": _duration(inference.compute_infer),
            "compute_output": _duration(inference.compute_output),
            "cache_hit": _duration(inference.cache_hit),
            "cache_miss": _duration(inference.cache_miss),
        },
        # Triton 2.51 always sends these two; packserve has no decoupled responses and does not
        # track memory per model, so they stay empty (tritonclient and perf_analyzer accept that).
        "response_stats": {},
        "batch_stats": [_batch(b) for b in stat.batch_stats],
        "memory_usage": [],
    }


def model_statistics(stats: list[ModelStatistics]) -> dict[str, Any]:
    return {"model_stats": [_model_stats(s) for s in stats]}


def repository_index(entries: list[IndexEntry]) -> list[dict[str, str]]:
    out = []
    for entry in entries:
        item = {"name": entry.name}
        # As Triton: no "version" when none could be read, no "reason" when there is none.
        if entry.version:
            item["version"] = entry.version
        if entry.state:
            item["state"] = entry.state
        if entry.reason:
            item["reason"] = entry.reason
        out.append(item)
    return out
