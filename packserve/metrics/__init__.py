"""Prometheus metrics: Triton's names, fed by the engine's one timing record per request.

Wiring (the CLI does this once, inside its event loop):

    metrics = MetricsServer(host, metrics_port)          # its own registry, plus CPU/GPU gauges
    engine = await Engine.start(options, observers=[PrometheusObserver(metrics.registry)])
    await metrics.start()
    ...
    await metrics.stop()
"""

from packserve.metrics.observer import PrometheusObserver
from packserve.metrics.server import MetricsServer
from packserve.metrics.system import SystemCollector, open_nvml

__all__ = ["MetricsServer", "PrometheusObserver", "SystemCollector", "open_nvml"]
