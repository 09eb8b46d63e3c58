"""Per-model device memory budgets for torch models: the `gpu_memory_budget` config parameter.

    parameters { key: "gpu_memory_budget" value { string_value: "512MiB" } }

A budget is checked at load, so a model that does not fit is refused before it serves:
- the model's weights (parameters and buffers), plus on CUDA the peak working memory of one
  warm-up run at its largest batch (inputs of zeros; only when every input has fixed dims), must
  fit in its budget;
- the budgets of every model loaded on one device are reserved together in a process-wide ledger,
  and their sum must fit in the device's memory (a GPU's total memory; a CPU's RAM), so a model
  cannot load with a budget that eats into what another model was promised. Models without a
  budget reserve nothing; put a budget on each model that shares a GPU for the promise to hold.
The reservation is released when the model is unloaded. Imports torch only inside functions.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from packserve.errors import ConfigError, ModelLoadError

BUDGET_PARAMETER = "gpu_memory_budget"
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_budget(model: str, parameters: Mapping[str, str]) -> int | None:
    """The model's budget in bytes, None when it has none; a ConfigError for a bad value."""
    text = parameters.get(BUDGET_PARAMETER)
    if text is None:
        return None
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ConfigError(
            f"model '{model}': parameter {BUDGET_PARAMETER} '{text}' is not a memory size; "
            "write e.g. 512MiB, 2GiB or 1000000"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def format_bytes(value: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{int(value)} B"


def device_memory_bytes(device: str) -> int:
    """Total memory of `device`: the GPU's (CUDA's own figure) or the host's RAM for "cpu"."""
    if device.startswith("cuda"):
        import torch

        _free, total = torch.cuda.mem_get_info(device)
        return int(total)
    return int(psutil.virtual_memory().total)


class BudgetLedger:
    """Budgets reserved per device by the models loaded in this process."""

    def __init__(self, device_total: Callable[[str], int] = device_memory_bytes) -> None:
        self._device_total = device_total
        self._lock = threading.Lock()
        # device -> model -> (bytes, owner): the owner is the loaded model object holding it.
        self._reserved: dict[str, dict[str, tuple[int, object]]] = {}

    def reserve(self, device: str, model: str, budget: int, owner: object) -> None:
        """Reserve `budget` bytes of `device` for `model`, or raise ModelLoadError naming who holds
        the rest. A model reserving again (a reload) replaces its own reservation."""
        total = self._device_total(device)
        with self._lock:
            others = {
                name: size for name, (size, _) in self._reserved.get(device, {}).items() if name != model
            }
            if sum(others.values()) + budget > total:
                held = ", ".join(f"'{name}' {format_bytes(size)}" for name, size in sorted(others.items()))
                raise ModelLoadError(
                    f"model '{model}': {BUDGET_PARAMETER} {format_bytes(budget)} does not fit on {device}: "
                    f"it has {format_bytes(total)} and {format_bytes(sum(others.values()))} is already "
                    f"reserved ({held or 'nothing'})"
                )
            self._reserved.setdefault(device, {})[model] = (budget, owner)

    def release(self, device: str, model: str, owner: object) -> None:
        """Drop `owner`'s reservation; a newer version's reservation of the same model stays."""
        with self._lock:
            held = self._reserved.get(device, {})
            if model in held and held[model][1] is owner:
                del held[model]

    def reserved(self, device: str) -> dict[str, int]:
        with self._lock:
            return {name: size for name, (size, _) in self._reserved.get(device, {}).items()}


LEDGER = BudgetLedger()


@dataclass(frozen=True, slots=True)
class MemoryNeed:
    weights_bytes: int
    working_bytes: int | None  # peak of a warm-up run above the weights; None when not measured

    @property
    def total(self) -> int:
        return self.weights_bytes + (self.working_bytes or 0)


def weights_bytes(module: Any) -> int:
    """Bytes of a module's parameters and buffers (TorchScript and torch.export modules alike)."""
    seen: set[int] = set()
    total = 0
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.data_ptr() in seen:  # tied weights count once
            continue
        seen.add(tensor.data_ptr())
        total += tensor.numel() * tensor.element_size()
    return total


def measure_need(module: Any, device: str, warmup: Callable[[], Any] | None) -> MemoryNeed:
    """The module's weights and, on CUDA with a warm-up run, the peak memory that run added."""
    weights = weights_bytes(module)
    if warmup is None or not device.startswith("cuda"):
        return MemoryNeed(weights, None)
    import torch

    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        warmup()
    torch.cuda.synchronize(device)
    # Process-wide figures: another model running at the same moment can only make this larger.
    return MemoryNeed(weights, max(0, int(torch.cuda.max_memory_allocated(device)) - base))


def check_fits(model: str, device: str, budget: int, need: MemoryNeed) -> None:
    if need.total > budget:
        working = (
            f" and {format_bytes(need.working_bytes)} of working memory at its largest batch"
            if need.working_bytes is not None
            else ""
        )
        raise ModelLoadError(
            f"model '{model}': needs {format_bytes(need.total)} on {device} "
            f"({format_bytes(need.weights_bytes)} of weights{working}), over its "
            f"{BUDGET_PARAMETER} of {format_bytes(budget)}"
        )
