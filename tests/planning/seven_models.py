"""Test data: a seed-style seven-model GPU profile (stated assumptions, not measurements).

Seven small vision models behind two pipelines on one V100-class GPU, batch latency = fixed cost +
per-image cost, a second instance 15% more throughput at 1.7x the latency (the figures of
docs/planning.md's worked example). `host_cpu_ms` adds the host CPU each image costs (decode,
protocol, post-processing) to every point, for the host-CPU tests.
"""

from __future__ import annotations

from packserve.planning.formats.profile_schema import EnsembleStep, ModelProfile, Profile, ProfilePoint

MIB = 1024**2
BATCHES = (1, 2, 4, 8, 16, 32)
MODELS = {  # fixed ms per batch, ms per image, MiB per instance
    "preprocess": (0.8, 0.35, 200),
    "quality": (0.6, 0.08, 300),
    "nsfw": (1.0, 0.15, 350),
    "tagger": (1.2, 0.25, 450),
    "faces": (1.5, 0.60, 400),
    "objects": (2.5, 1.10, 600),
    "text": (3.0, 1.80, 700),
}
PIPELINES = {"upload": ("quality", "nsfw", "tagger"), "inspect": ("faces", "objects", "text")}
MIX = {"upload": 0.7, "inspect": 0.3}
LOAD_PER_S = 25e6 / 86400  # 25 M requests a day
PEAK_FACTOR = 3.0
P99_MS = 100.0
MEMORY = 16 * 1024**3


def _points(fixed: float, per_image: float, mib: int, host_cpu_ms: float) -> tuple[ProfilePoint, ...]:
    found = []
    for instances in (1, 2):
        for batch in BATCHES:
            latency = fixed + per_image * batch
            throughput = 1000 * batch / latency
            if instances == 2:
                latency, throughput = latency * 1.7, throughput * 1.15
            found.append(
                ProfilePoint(
                    batch, instances, instances, throughput, latency, latency * 1.2, 0.0, 0.1 * latency,
                    0.8 * latency, 0.1 * latency, mib * instances * MIB, cpu_ms=host_cpu_ms * batch,
                )
            )  # fmt: skip
    return tuple(found)


def seven_model_profile(host_cpu_ms: float = 0.0, host_cores: int = 0) -> Profile:
    models = [
        ModelProfile(name, "onnxruntime_onnx", "onnxruntime", 32, _points(*figures, host_cpu_ms))
        for name, figures in MODELS.items()
    ]
    for name, branches in PIPELINES.items():
        steps = (
            EnsembleStep("preprocess", ("IMAGE",), ("pixels",)),
            *(EnsembleStep(model, ("pixels",), (f"{model}_out",)) for model in branches),
        )
        models.append(ModelProfile(name, "ensemble", "", 32, (), steps))
    return Profile(
        device="cuda:0",
        device_name="V100-class GPU (assumed figures)",
        models=tuple(models),
        extra={"host_cores": host_cores} if host_cores else {},
    )
