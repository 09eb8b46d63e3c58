"""Which GPU ordinals this process can use, for resolving KIND_AUTO and KIND_GPU instance groups.

Config loading must stay cheap and must not pull in torch just to count devices, so the answer
comes from torch only when something else already imported it, else from the NVIDIA driver's
/proc listing (narrowed by CUDA_VISIBLE_DEVICES). No driver means no GPUs: CPU instances.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

_DRIVER_GPU_LISTING = Path("/proc/driver/nvidia/gpus")


@functools.cache
def visible_gpus() -> tuple[int, ...]:
    """GPU ordinals as CUDA numbers them in this process (after CUDA_VISIBLE_DEVICES)."""
    return tuple(range(_count_visible_gpus()))


def _count_visible_gpus() -> int:
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
        except Exception:  # a broken CUDA install must not fail config loading; fall through
            pass
    try:
        installed = sum(1 for _ in _DRIVER_GPU_LISTING.iterdir())
    except OSError:
        return 0
    return _apply_visible_devices(installed, os.environ.get("CUDA_VISIBLE_DEVICES"))


def _apply_visible_devices(installed: int, visible_devices: str | None) -> int:
    """How many of `installed` GPUs CUDA exposes given a CUDA_VISIBLE_DEVICES value.

    CUDA stops at the first entry it cannot use, so "0,7,1" on a 2-GPU host exposes one device.
    """
    if visible_devices is None:
        return installed
    count = 0
    seen: set[str] = set()
    for entry in visible_devices.split(","):
        entry = entry.strip()
        if not entry or entry in seen:
            break
        if entry.isdigit() and int(entry) >= installed:
            break
        # UUID / MIG entries cannot be checked without NVML; CUDA accepts them when valid.
        seen.add(entry)
        count += 1
    return min(count, installed)
