"""Synthetic profiles with known latencies: batch latency = fixed + per_row x batch on one instance."""

from __future__ import annotations

from dataclasses import dataclass

from packserve.planning.formats.profile_schema import EnsembleStep, ModelProfile, Profile, ProfilePoint

MIB = 1024**2


@dataclass(frozen=True)
class LinearModel:
    name: str
    fixed_ms: float
    per_row_ms: float
    memory_mib: int
    max_batch_size: int = 8


def linear_points(model: LinearModel, batch_sizes: tuple[int, ...]) -> tuple[ProfilePoint, ...]:
    points = []
    for batch in batch_sizes:
        if batch > max(1, model.max_batch_size):
            continue
        latency = model.fixed_ms + model.per_row_ms * batch
        points.append(
            ProfilePoint(
                batch_size=batch,
                instances=1,
                concurrency=1,
                throughput_per_s=1000.0 * batch / latency,
                latency_p50_ms=latency,
                latency_p99_ms=latency * 1.1,
                queue_ms=0.0,
                compute_input_ms=0.0,
                compute_infer_ms=latency,
                compute_output_ms=0.0,
                memory_bytes=model.memory_mib * MIB,
            )
        )
    return tuple(points)


def linear_profile(
    models: list[LinearModel],
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8),
    ensembles: dict[str, list[str]] | None = None,
) -> Profile:
    """Leaf models plus ensembles that call their models one after another."""
    profiles = [
        ModelProfile(
            m.name, "onnxruntime_onnx", "onnxruntime", m.max_batch_size, linear_points(m, batch_sizes)
        )
        for m in models
    ]
    for name, chain in (ensembles or {}).items():
        steps = tuple(EnsembleStep(model, (f"t{i}",), (f"t{i + 1}",)) for i, model in enumerate(chain))
        profiles.append(ModelProfile(name, "ensemble", "", 8, (), steps))
    return Profile(device="cuda:0", device_name="synthetic GPU", models=tuple(profiles))
