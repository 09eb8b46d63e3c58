"""`profile --device cuda:N`: models go to that GPU and memory is read from the device. The logic
runs here on stand-ins for torch / NVML (no GPU on CI); scripts/gpu_check runs it on a real one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from packserve.errors import InvalidArgumentError
from packserve.planning.profiling.device_memory import open_device_memory, parse_device
from packserve.planning.profiling.profiler import _profiling_config, on_device

GIB = 1024**3


class _FakeCuda:
    """torch.cuda as the driver reports it: mem_get_info = (free, total) of the whole device."""

    def __init__(self, count: int) -> None:
        self.count, self.free, self.synced = count, 70 * GIB, []

    def is_available(self) -> bool:
        return self.count > 0

    def device_count(self) -> int:
        return self.count

    def synchronize(self, ordinal: int) -> None:
        self.synced.append(ordinal)

    def mem_get_info(self, ordinal: int) -> tuple[int, int]:
        return self.free, 80 * GIB

    def get_device_name(self, ordinal: int) -> str:
        return f"Fake H100 #{ordinal}"


def test_gpu_memory_comes_from_the_device_not_one_allocator() -> None:
    cuda = _FakeCuda(2)
    memory = open_device_memory("cuda:1", torch_module=SimpleNamespace(cuda=cuda))
    before = memory.used_bytes()
    cuda.free -= 3 * GIB  # e.g. ONNX Runtime's CUDA arena: torch's allocator never sees it
    assert memory.used_bytes() - before == 3 * GIB
    assert cuda.synced == [1, 1]
    assert memory.device_name() == "Fake H100 #1"


def test_nvml_is_the_fallback_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    used = {"value": 5 * GIB}
    nvml: Any = SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"h{i}",
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=used["value"]),
        nvmlDeviceGetName=lambda h: b"Fake A100",
    )
    memory = open_device_memory("cuda:0", torch_module=SimpleNamespace(cuda=_FakeCuda(0)), nvml_module=nvml)
    assert memory.used_bytes() == 5 * GIB and memory.device_name() == "Fake A100"


def test_a_gpu_that_is_not_there_is_refused_in_one_line() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        open_device_memory("cuda:3", torch_module=SimpleNamespace(cuda=_FakeCuda(1)), nvml_module=None)
    message = str(caught.value)
    assert "no CUDA GPU 3" in message and "1 visible" in message and "\n" not in message
    with pytest.raises(InvalidArgumentError, match="cpu or cuda:N"):
        parse_device("gpu0")


def test_profiling_moves_every_instance_to_the_profiled_gpu() -> None:
    original = {
        "name": "m",
        "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
        "dynamic_batching": {"max_queue_delay_microseconds": 500},
    }
    config = _profiling_config(original, 2, "cuda:1")
    assert config["instance_group"] == [{"count": 2, "kind": "KIND_GPU", "gpus": [1]}]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 0
    assert on_device(original, "cuda:1")["instance_group"] == [{"count": 1, "kind": "KIND_GPU", "gpus": [1]}]
    # On a CPU the model keeps its own kind.
    assert _profiling_config(original, 2, "cpu")["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
    assert on_device(original, "cpu") == original
