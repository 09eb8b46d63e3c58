"""Host and GPU gauges, read fresh on every scrape (psutil for the CPU, NVML for GPUs).

NVML (package nvidia-ml-py) is optional: without it, or without a driver, there are simply no GPU
metrics. Called on the metrics server's thread; never on the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import psutil
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from packserve.metrics import names
from packserve.metrics.names import MetricSpec

logger = logging.getLogger(__name__)

_PERCENT = 100.0
_MILLIWATTS_PER_WATT = 1000.0


@dataclass(frozen=True, slots=True)
class GpuSample:
    uuid: str
    utilization: float | None  # 0.0 - 1.0
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    power_watts: float | None


class GpuReader(Protocol):
    def read(self) -> list[GpuSample]: ...


class NvmlGpuReader:
    """Reads every GPU NVML sees. Build it with `open_nvml()`, which returns None without NVML."""

    def __init__(self, nvml: Any, handles: list[Any], uuids: list[str]) -> None:
        self._nvml = nvml
        self._handles = handles
        self._uuids = uuids

    def read(self) -> list[GpuSample]:
        return [self._read_one(handle, uuid) for handle, uuid in zip(self._handles, self._uuids, strict=True)]

    def _read_one(self, handle: Any, uuid: str) -> GpuSample:
        nvml = self._nvml
        # Each query can be unsupported on some boards (power on many); a missing value is skipped.
        utilization = self._query(lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu / _PERCENT)
        memory = self._query(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        power = self._query(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / _MILLIWATTS_PER_WATT)
        return GpuSample(
            uuid=uuid,
            utilization=utilization,
            memory_total_bytes=int(memory.total) if memory is not None else None,
            memory_used_bytes=int(memory.used) if memory is not None else None,
            power_watts=power,
        )

    def _query(self, read: Any) -> Any:
        try:
            return read()
        except self._nvml.NVMLError:
            return None


def open_nvml() -> NvmlGpuReader | None:
    """An NVML reader for every visible GPU, or None when NVML, its driver or any GPU is missing."""
    try:
        import pynvml  # nvidia-ml-py; optional
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        uuids = [_as_text(pynvml.nvmlDeviceGetUUID(handle)) for handle in handles]
    except pynvml.NVMLError as error:
        logger.info("no GPU metrics: NVML unavailable (%s)", error)
        return None
    if not handles:
        return None
    return NvmlGpuReader(pynvml, handles, uuids)


def _as_text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SystemCollector(Collector):
    """nv_cpu_* (unless `cpu=False`); nv_gpu_* per GPU when a GPU reader is given.

    `interval_s` is Triton's --metrics-interval-ms: readings are refreshed at most that often, so
    frequent scrapes (several Prometheus servers) do not each pay for psutil and NVML."""

    def __init__(
        self, gpu_reader: GpuReader | None = None, cpu: bool = True, interval_s: float = 0.0
    ) -> None:
        self._gpu_reader = gpu_reader
        self._cpu = cpu
        self._interval_s = interval_s
        self._cached: list[Metric] = []
        self._read_at = -float("inf")
        self._lock = threading.Lock()
        # cpu_percent(None) reports use since the previous call; this first call sets the baseline
        # so the first scrape reports a real value instead of 0.
        psutil.cpu_percent(interval=None)

    def collect(self) -> Iterable[Metric]:
        with self._lock:  # scrapes come from the metrics server's threads
            now = time.monotonic()
            if now - self._read_at >= self._interval_s or not self._cached:
                self._cached = list(self._read())
                self._read_at = now
            return list(self._cached)

    def _read(self) -> Iterable[Metric]:
        if self._cpu:
            memory = psutil.virtual_memory()
            yield _gauge(names.CPU_UTILIZATION, psutil.cpu_percent(interval=None) / _PERCENT)
            yield _gauge(names.CPU_MEMORY_TOTAL_BYTES, memory.total)
            yield _gauge(names.CPU_MEMORY_USED_BYTES, memory.total - memory.available)
        if self._gpu_reader is None:
            return
        samples = self._gpu_reader.read()
        per_gpu = (
            (names.GPU_UTILIZATION, "utilization"),
            (names.GPU_MEMORY_TOTAL_BYTES, "memory_total_bytes"),
            (names.GPU_MEMORY_USED_BYTES, "memory_used_bytes"),
            (names.GPU_POWER_USAGE, "power_watts"),
        )
        for spec, attribute in per_gpu:
            family = GaugeMetricFamily(spec.name, spec.documentation, labels=spec.labels)
            for sample in samples:
                value = getattr(sample, attribute)
                if value is not None:
                    family.add_metric([sample.uuid], value)
            yield family


def _gauge(spec: MetricSpec, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.name, spec.documentation, value=value)
