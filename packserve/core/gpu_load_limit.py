"""tritonserver's `--model-load-gpu-limit <device>:<fraction>`: a model that puts an instance on
that GPU does not load while the GPU's memory in use (by every process, as the driver counts it)
is above the fraction of its total. Checked once per load, before any instance is created, so a
refused model holds nothing; the answer names the GPU and the figures.

The memory figure comes from NVML (nvidia-ml-py) or, failing that, from torch's
`cuda.mem_get_info`; when neither can read it, the load is refused rather than the limit ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from packserve.errors import ModelLoadError


def parse_limit(text: str) -> tuple[int, float]:
    """'0:0.8' -> (0, 0.8); ValueError naming what is wrong."""
    device, sep, fraction = text.partition(":")
    try:
        device_id, limit = int(device), float(fraction)
    except ValueError:
        device_id, limit = -1, -1.0
    if not sep or device_id < 0 or not 0.0 < limit <= 1.0:
        raise ValueError(f"'{text}' is not <device id>:<fraction of its memory>, e.g. 0:0.8")
    return device_id, limit


def device_memory_in_use(device_id: int) -> tuple[int, int]:
    """(bytes in use, total bytes) of GPU `device_id`, as the driver counts them."""
    errors: list[str] = []
    try:
        import pynvml

        pynvml.nvmlInit()
        info: Any = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(device_id))
        return int(info.used), int(info.total)
    except Exception as error:  # no driver, no such device, no package
        errors.append(f"NVML: {error}")
    try:
        import torch

        free, total = torch.cuda.mem_get_info(device_id)
        return int(total - free), int(total)
    except Exception as error:
        errors.append(f"torch: {error}")
    raise ModelLoadError(f"cannot read the memory in use on GPU {device_id} ({'; '.join(errors)})")


@dataclass(frozen=True)
class GpuLoadLimits:
    fractions: Mapping[int, float] = field(default_factory=dict)  # device id -> fraction of its memory
    memory_in_use: Callable[[int], tuple[int, int]] = device_memory_in_use

    def check(self, model: str, device_ids: Iterable[int]) -> None:
        for device_id in sorted(set(device_ids)):
            limit = self.fractions.get(device_id)
            if limit is None:
                continue
            try:
                used, total = self.memory_in_use(device_id)
            except ModelLoadError as error:
                raise ModelLoadError(
                    f"model '{model}': --model-load-gpu-limit {device_id}:{limit}: {error}"
                ) from None
            if used > limit * total:
                # Triton's words first, then the figures.
                raise ModelLoadError(
                    f"model '{model}': memory limit set for GPU {device_id} has exceeded: {used} of "
                    f"{total} bytes are in use, above the limit of {limit:g} (--model-load-gpu-limit)"
                )
