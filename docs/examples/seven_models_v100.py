"""Write the synthetic profile of the worked example in docs/planning.md (stated assumptions, not
measurements): seven small vision models on a V100 16 GB, TensorRT/ONNX FP16-class latencies.

    .venv/bin/python docs/examples/seven_models_v100.py docs/examples/seven_models_v100.profile.json

The tests plan this same profile (tests/planning/test_fleet_search.py, with `host_cpu_ms` /
`host_cores` for the host-CPU checks), and check that this script writes the committed file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from packserve.planning.formats.profile_schema import EnsembleStep, ModelProfile, Profile, ProfilePoint

MIB = 1024**2
BATCHES = (1, 2, 4, 8, 16, 32)
# name: (fixed ms per batch, ms per image, weights + workspace MiB per instance)
MODELS = {
    "preprocess": (0.8, 0.35, 200),  # nvJPEG decode + resize + normalize of a ~640x480 JPEG
    "quality_mobilenet_v3": (0.6, 0.08, 300),
    "nsfw_efficientnet_b0": (1.0, 0.15, 350),
    "tagger_resnet50": (1.2, 0.25, 450),
    "faces_retinaface_mnet": (1.5, 0.60, 400),
    "objects_yolov5s": (2.5, 1.10, 600),
    "text_dbnet": (3.0, 1.80, 700),
}
PIPELINES = {
    "upload": ("quality_mobilenet_v3", "nsfw_efficientnet_b0", "tagger_resnet50"),
    "inspect": ("faces_retinaface_mnet", "objects_yolov5s", "text_dbnet"),
}
# A second instance overlaps copies with compute: ~15% more throughput, ~1.7x the batch latency.
SECOND_INSTANCE_SPEEDUP, SECOND_INSTANCE_LATENCY = 1.15, 1.7

# The example's plan: --load 25M/day --peak-factor 3 --p99 100ms --gpu-memory 16GiB
# --mix upload=0.7 --mix inspect=0.3
LOAD_PER_S = 25e6 / 86400
PEAK_FACTOR = 3.0
P99_MS = 100.0
MEMORY = 16 * 1024**3
MIX = {"upload": 0.7, "inspect": 0.3}


def points(fixed: float, per_image: float, mib: int, host_cpu_ms: float = 0.0) -> tuple[ProfilePoint, ...]:
    """`host_cpu_ms`: host CPU each image costs (decode, protocol, post-processing); 0 = not measured."""
    found = []
    for instances in (1, 2):
        for batch in BATCHES:
            latency = fixed + per_image * batch
            throughput = 1000 * batch / latency
            if instances == 2:
                latency *= SECOND_INSTANCE_LATENCY
                throughput *= SECOND_INSTANCE_SPEEDUP
            found.append(
                ProfilePoint(
                    batch,
                    instances,
                    instances,
                    throughput,
                    latency,
                    latency * 1.2,
                    0.0,
                    0.1 * latency,
                    0.8 * latency,
                    0.1 * latency,
                    mib * instances * MIB,
                    cpu_ms=host_cpu_ms * batch,
                )
            )
    return tuple(found)


def build(host_cpu_ms: float = 0.0, host_cores: int = 0) -> Profile:
    """The example's profile; `host_cores`: the profiling host's cores (0 = not recorded)."""
    models = [
        ModelProfile(name, "onnxruntime_onnx", "onnxruntime", 32, points(*figures, host_cpu_ms))
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
        device_name="NVIDIA V100 16 GB (assumed figures, see docs/planning.md)",
        models=tuple(models),
        notes="synthetic: batch latency = fixed + per-image x batch; not a measurement",
        extra={"host_cores": host_cores} if host_cores else {},
    )


if __name__ == "__main__":
    build().save(Path(sys.argv[1]))
