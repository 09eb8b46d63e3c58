"""Zero copies: device-to-host copies per request through the packed ensemble.

The packed repository runs in-process (the engine `packserve serve` runs); requests go through
the `pack` ensemble and their outputs are turned into host arrays by the front ends' helper
`packserve.messages.to_host`, as a reply is. torch's profiler records every CUDA memcpy;
device-to-host ones are counted per request and set against the ensemble's final outputs (seven
score vectors): more
would mean an intermediate tensor left the GPU. Host-to-device copies (the JPEG bytes into
nvjpeg) are counted too. On CPU torch there are no device copies: the dry run runs the same
requests under the profiler and reports zero.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from bench.gpu_check import repository as repo
from bench.gpu_check.common import Settings
from packserve.core.engine import Engine, EngineOptions
from packserve.messages import InferRequest, to_host


async def _requests(repository: Any, jpeg: bytes, count: int, profile: Any) -> tuple[int, Any]:
    engine = await Engine.start(
        EngineOptions(repository, "explicit", load_models=(repo.ENSEMBLE, repo.PREPROCESS, *repo.NETS))
    )
    try:
        failed = [e for e in engine.repository_index() if e.state != "READY"]
        if failed:
            raise RuntimeError(f"model '{failed[0].name}' did not load: {failed[0].reason}")
        image = np.empty((1, 1), dtype=object)
        image[0, 0] = jpeg
        outputs = 0
        for _ in range(3):  # warm-up outside the profile: CUDA context, nvjpeg, cudnn plans
            await engine.infer(InferRequest(model_name=repo.ENSEMBLE, inputs={"IMAGE": image}))
        with profile as prof:
            for _ in range(count):
                response = await engine.infer(InferRequest(model_name=repo.ENSEMBLE, inputs={"IMAGE": image}))
                host = [to_host(tensor) for tensor in response.outputs.values()]
                outputs = len(host)
        return outputs, prof
    finally:
        await engine.shutdown(drain_timeout_s=5.0)


def run(settings: Settings) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    repository = settings.work / "packed"
    if not repository.is_dir():
        repository = repo.write_packed(settings.work, settings.nets_dir, settings.shape, settings.device, 2)
    count = 5 if settings.quick else 50
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if settings.cuda and torch.cuda.is_available() else []
    )
    outputs, prof = asyncio.run(
        _requests(repository, settings.sample_jpeg, count, profile(activities=activities))
    )
    names = [event.name for event in prof.events()]
    device_to_host = sum(1 for n in names if "Memcpy DtoH" in n)
    host_to_device = sum(1 for n in names if "Memcpy HtoD" in n)
    per_request = device_to_host / count
    return {
        "requests": count,
        "final_outputs_per_request": outputs,
        "device_to_host_per_request": per_request,
        "host_to_device_per_request": host_to_device / count,
        "profiled_activities": [str(a).split(".")[-1] for a in activities],
        "checks": [
            {
                "check": "device-to-host copies per request <= final outputs (intermediates stay on the GPU)",
                "ok": per_request <= outputs if settings.cuda else None,
                "figures": {"device_to_host_per_request": per_request, "final_outputs": outputs},
            },
        ],
    }
