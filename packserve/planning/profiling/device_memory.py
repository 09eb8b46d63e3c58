"""Memory in use on the device being profiled, read from the device itself.

On a GPU the figure comes from the driver - `torch.cuda.mem_get_info` (cudaMemGetInfo: the
device's total less its free memory) or, without torch, NVML's used memory - so it sees every
allocation on the device: ONNX Runtime's CUDA arena, cuDNN workspaces, torch's caching allocator.
`torch.cuda.memory_allocated` would see torch's own tensors only. On a CPU it is the process's
resident set. A profile measures each model as the difference before and after loading it (and
running it once), so memory other processes hold on the device cancels out unless it changes.
"""

from __future__ import annotations

import gc
import os
import platform
import re
from typing import Any, Protocol

import psutil

from packserve.errors import InvalidArgumentError

_CUDA = re.compile(r"^cuda:(\d+)$")


class DeviceMemory(Protocol):
    def used_bytes(self) -> int: ...

    def device_name(self) -> str: ...


def parse_device(device: str) -> int | None:
    """'cpu' -> None, 'cuda:N' -> N; anything else is refused naming the forms."""
    if device == "cpu":
        return None
    match = _CUDA.match(device)
    if match is None:
        raise InvalidArgumentError(f"device '{device}' must be cpu or cuda:N (N a GPU ordinal)")
    return int(match.group(1))


def open_device_memory(
    device: str, torch_module: Any | None = None, nvml_module: Any | None = None
) -> DeviceMemory:
    """The reader for `device`; on `cuda:N` refuses (one line) when GPU N is not visible here.
    `torch_module` / `nvml_module` replace the imports (tests)."""
    ordinal = parse_device(device)
    if ordinal is None:
        return _ProcessMemory()
    torch = torch_module if torch_module is not None else _import("torch")
    if torch is not None and _cuda_count(torch) > ordinal:
        return _TorchDeviceMemory(torch, ordinal)
    nvml = nvml_module if nvml_module is not None else _import("pynvml")
    if nvml is not None and "CUDA_VISIBLE_DEVICES" not in os.environ:
        try:
            nvml.nvmlInit()
            if nvml.nvmlDeviceGetCount() > ordinal:
                return _NvmlDeviceMemory(nvml, nvml.nvmlDeviceGetHandleByIndex(ordinal))
        except Exception:
            pass
    seen = _cuda_count(torch) if torch is not None else 0
    raise InvalidArgumentError(
        f"device '{device}': no CUDA GPU {ordinal} is visible to this process ({seen} visible"
        f"{'' if torch is not None else ', and torch is not installed'}); profile with --device cpu"
    )


def _import(name: str) -> Any | None:
    try:
        return __import__(name)
    except ImportError:
        return None


def _cuda_count(torch: Any) -> int:
    try:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:
        return 0


class _ProcessMemory:
    def __init__(self) -> None:
        self._process = psutil.Process(os.getpid())

    def used_bytes(self) -> int:
        gc.collect()
        return int(self._process.memory_info().rss)

    def device_name(self) -> str:
        return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


class _TorchDeviceMemory:
    def __init__(self, torch: Any, ordinal: int) -> None:
        self._torch, self._ordinal = torch, ordinal

    def used_bytes(self) -> int:
        cuda = self._torch.cuda
        cuda.synchronize(self._ordinal)
        free, total = cuda.mem_get_info(self._ordinal)
        return int(total - free)

    def device_name(self) -> str:
        return str(self._torch.cuda.get_device_name(self._ordinal))


class _NvmlDeviceMemory:
    def __init__(self, nvml: Any, handle: Any) -> None:
        self._nvml, self._handle = nvml, handle

    def used_bytes(self) -> int:
        return int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)

    def device_name(self) -> str:
        name = self._nvml.nvmlDeviceGetName(self._handle)
        return name.decode() if isinstance(name, bytes) else str(name)
