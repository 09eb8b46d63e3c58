"""Host gauges from psutil, GPU gauges from a GPU reader, and NVML being optional."""

from __future__ import annotations

from prometheus_client.core import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from packserve.metrics import SystemCollector, open_nvml
from packserve.metrics.exposition import render
from packserve.metrics.system import GpuSample


class FakeGpuReader:
    def read(self) -> list[GpuSample]:
        return [
            GpuSample("GPU-aaaa", 0.75, 80 * 2**30, 10 * 2**30, 312.5),
            GpuSample("GPU-bbbb", 0.0, 80 * 2**30, 2**30, None),  # a board that cannot report power
        ]


def _families(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = render(registry).decode()
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def test_cpu_gauges_are_sane() -> None:
    registry = CollectorRegistry()
    registry.register(SystemCollector())
    families = _families(registry)
    ((_, utilization),) = families["nv_cpu_utilization"]
    ((_, total),) = families["nv_cpu_memory_total_bytes"]
    ((_, used),) = families["nv_cpu_memory_used_bytes"]
    assert 0.0 <= utilization <= 1.0
    assert 0 < used <= total
    assert not any(name.startswith("nv_gpu") for name in families)


def test_gpu_gauges_are_labelled_by_uuid() -> None:
    registry = CollectorRegistry()
    registry.register(SystemCollector(FakeGpuReader()))
    families = _families(registry)
    assert families["nv_gpu_utilization"] == [
        ({"gpu_uuid": "GPU-aaaa"}, 0.75),
        ({"gpu_uuid": "GPU-bbbb"}, 0.0),
    ]
    assert families["nv_gpu_memory_used_bytes"][0] == ({"gpu_uuid": "GPU-aaaa"}, 10 * 2**30)
    assert families["nv_gpu_memory_total_bytes"][1] == ({"gpu_uuid": "GPU-bbbb"}, 80 * 2**30)
    assert families["nv_gpu_power_usage"] == [({"gpu_uuid": "GPU-aaaa"}, 312.5)]


def test_open_nvml_without_a_gpu_gives_none_or_a_working_reader() -> None:
    reader = open_nvml()
    if reader is None:  # no NVML library, driver or GPU: no GPU metrics, and no error
        return
    for sample in reader.read():
        assert sample.uuid.startswith("GPU-")
        assert sample.memory_total_bytes is None or sample.memory_total_bytes > 0
