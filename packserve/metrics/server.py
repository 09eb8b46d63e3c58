"""MetricsServer: `/metrics` on its own port, served from a background thread.

A thread (not the event loop) so that a slow scrape - psutil, NVML - never delays a request; the
collectors it reads are built for that (see observer.py).
"""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.registry import Collector, CollectorRegistry

from packserve.metrics.exposition import CONTENT_TYPE, render
from packserve.metrics.system import SystemCollector, open_nvml

METRICS_PATH = "/metrics"


def _handler_for(registry: Collector) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != METRICS_PATH:
                self._reply(404, b"not found: metrics are served at /metrics\n", "text/plain")
                return
            self._reply(200, render(registry), CONTENT_TYPE)

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # One line per scrape would flood the log every few seconds.
            return

    return MetricsHandler


class MetricsServer:
    """Serve a registry at http://host:port/metrics. Port 0 picks a free port (see `port`).

    Owns its `registry` unless one is given; feed it with `PrometheusObserver(server.registry)`.
    With `system_metrics` it also reports CPU (psutil) and, where NVML finds GPUs, GPU gauges.
    """

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 8002,
        registry: CollectorRegistry | None = None,
        system_metrics: bool = True,
        *,
        cpu_metrics: bool = True,
        gpu_metrics: bool = True,
        interval_ms: float = 0.0,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if system_metrics and (cpu_metrics or gpu_metrics):
            # Triton's --allow-cpu-metrics / --allow-gpu-metrics / --metrics-interval-ms.
            gpus = open_nvml() if gpu_metrics else None
            self.registry.register(SystemCollector(gpus, cpu=cpu_metrics, interval_s=interval_ms / 1000))
        self._host = host
        self._requested_port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port once started (the one asked for, or the free one picked for 0)."""
        if self._httpd is None:
            return self._requested_port
        return int(self._httpd.server_address[1])

    async def start(self) -> None:
        """Bind (OSError if the port is taken) and serve from a background thread."""
        if self._httpd is not None:
            return
        httpd = ThreadingHTTPServer((self._host, self._requested_port), _handler_for(self.registry))
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="packserve-metrics", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is None:
            return
        # shutdown() blocks until the serving thread notices (up to its poll interval): off the loop.
        await asyncio.to_thread(_close, httpd, thread)


def _close(httpd: ThreadingHTTPServer, thread: threading.Thread | None) -> None:
    httpd.shutdown()
    httpd.server_close()
    if thread is not None:
        thread.join()
