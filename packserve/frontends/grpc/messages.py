"""The engine's read-only views -> the protocol's protobuf answers (metadata, statistics, index)."""

from __future__ import annotations

from collections.abc import Iterable

from tritonclient.grpc import service_pb2

from packserve.core.views import (
    DurationStat,
    IndexEntry,
    InferenceStats,
    ModelMetadata,
    ModelStatistics,
    ServerMetadata,
    TensorMetadata,
)


def server_metadata(view: ServerMetadata) -> service_pb2.ServerMetadataResponse:
    return service_pb2.ServerMetadataResponse(
        name=view.name, version=view.version, extensions=view.extensions
    )


def _tensor(view: TensorMetadata) -> service_pb2.ModelMetadataResponse.TensorMetadata:
    return service_pb2.ModelMetadataResponse.TensorMetadata(
        name=view.name, datatype=view.datatype.wire_name, shape=view.shape
    )


def model_metadata(view: ModelMetadata) -> service_pb2.ModelMetadataResponse:
    return service_pb2.ModelMetadataResponse(
        name=view.name,
        versions=view.versions,
        platform=view.platform,
        inputs=[_tensor(t) for t in view.inputs],
        outputs=[_tensor(t) for t in view.outputs],
    )


def _duration(stat: DurationStat) -> service_pb2.StatisticDuration:
    return service_pb2.StatisticDuration(count=stat.count, ns=stat.ns)


def _inference_stats(stats: InferenceStats) -> service_pb2.InferStatistics:
    return service_pb2.InferStatistics(
        success=_duration(stats.success),
        fail=_duration(stats.fail),
        queue=_duration(stats.queue),
        compute_input=_duration(stats.compute_input),
        compute_infer=_duration(stats.compute_infer),
        compute_output=_duration(stats.compute_output),
        cache_hit=_duration(stats.cache_hit),
        cache_miss=_duration(stats.cache_miss),
    )


def model_statistics(views: Iterable[ModelStatistics]) -> service_pb2.ModelStatisticsResponse:
    return service_pb2.ModelStatisticsResponse(
        model_stats=[
            service_pb2.ModelStatistics(
                name=view.name,
                version=view.version,
                last_inference=view.last_inference_ms,
                inference_count=view.inference_count,
                execution_count=view.execution_count,
                inference_stats=_inference_stats(view.inference_stats),
                batch_stats=[
                    service_pb2.InferBatchStatistics(
                        batch_size=batch.batch_size,
                        compute_input=_duration(batch.compute_input),
                        compute_infer=_duration(batch.compute_infer),
                        compute_output=_duration(batch.compute_output),
                    )
                    for batch in view.batch_stats
                ],
            )
            for view in views
        ]
    )


def repository_index(entries: Iterable[IndexEntry]) -> service_pb2.RepositoryIndexResponse:
    return service_pb2.RepositoryIndexResponse(
        models=[
            service_pb2.RepositoryIndexResponse.ModelIndex(
                name=entry.name, version=entry.version, state=entry.state, reason=entry.reason
            )
            for entry in entries
        ]
    )
