"""A real Prometheus (Debian's `prometheus`, installed by scripts/setup_dev.sh) scrapes the generated
pod, started as in the pod contract test, through the ServiceMonitor's endpoint settings. Every
query of deploy/grafana/packserve-dashboard.json and the prometheus-adapter rule's query are then
evaluated through Prometheus's HTTP API before, during and after a load, and must move with it.

Never skipped: a missing binary fails (CI installs it), and where no network namespace can be made
the pod's server runs on loopback instead.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from packserve.planning.formats.plan_schema import Plan
from packserve.planning.output.k8s import DeployOptions, keda_manifests
from packserve.planning.output.k8s_scaling import render_adapter_query
from tests.deploy.deploy_fleet import REPO_ROOT
from tests.deploy.deploy_load import Load, http_status, infer_body, model_metadata
from tests.deploy.deploy_pod import RunningPod, pod_network, pod_network_unavailable, pod_on_loopback, run_pod

pytestmark = pytest.mark.timeout(600)
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "packserve-dashboard.json"
SCRAPE_INTERVAL = "1s"  # the ServiceMonitor's 15s, shortened so the test takes seconds
RATE_INTERVAL = "5s"  # what Grafana's $__rate_interval is at a 1 s scrape (4 x scrape, rounded up)
LOAD_S = 8.0
# Not driven by requests: present and positive is what they can show.
MACHINE_GAUGES = ("nv_cpu_utilization", "nv_cpu_memory_used_bytes", "nv_cpu_memory_total_bytes")
STATIC = ("nv_model_load_duration_secs",)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def as_grafana_would(expr: str) -> str:
    # The dashboard's variables: $model's "All" is the regex .*, $__rate_interval as above.
    return expr.replace("$model", ".*").replace("$__rate_interval", RATE_INTERVAL)


class Prometheus:
    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is not installed: scripts/setup_dev.sh installs Debian's package"
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self._log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address={self.url.removeprefix('http://')}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        with urllib.request.urlopen(
            f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10
        ) as reply:
            answer = json.load(reply)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"}
        with urllib.request.urlopen(
            f"{self.url}/api/v1/query_range?{urllib.parse.urlencode(params)}", timeout=10
        ) as reply:
            answer = json.load(reply)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def wait_up(self, job: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited"
            try:
                if any(s["value"][1] == "1" for s in self.query(f'up{{job="{job}"}}')):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        pytest.fail("prometheus never scraped the pod")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def peak(series: list[dict[str, Any]]) -> float | None:
    """The largest finite value across the series (instant or range); None if there is none."""
    values = [float(v[1]) for s in series for v in ([s["value"]] if "value" in s else s["values"])]
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else None


def scrape_config(
    monitor: dict[str, Any], service: dict[str, Any], pod: RunningPod, pod_name: str
) -> dict[str, Any]:
    """The scrape job the Prometheus operator derives from the ServiceMonitor, for this one pod:
    the endpoint's port (by name, through the Service) and path, and the namespace/pod/service
    labels the operator attaches (the adapter rule maps namespace and pod to Kubernetes objects)."""
    endpoint = monitor["spec"]["endpoints"][0]
    port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    labels = {
        "namespace": monitor["metadata"]["namespace"],
        "pod": pod_name,
        "service": service["metadata"]["name"],
    }
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": monitor["metadata"]["name"],
                "metrics_path": endpoint["path"],
                "scrape_interval": SCRAPE_INTERVAL,
                "static_configs": [
                    {"targets": [f"{pod.ip}:{pod.port(port['targetPort'])}"], "labels": labels}
                ],
            }
        ],
    }


@contextlib.contextmanager
def scraped_pod(
    deployment: dict[str, Any], config_maps: dict[str, Any], fleet_dir: Path, scratch: Path
) -> Iterator[RunningPod]:
    """The generated pod at its own IP; where no namespace can be made, its server on loopback
    (this test must run everywhere CI does, so it falls back rather than skipping)."""
    if pod_network_unavailable() is None:
        with (
            pod_network(7) as network,
            run_pod(deployment, config_maps, {"models": fleet_dir / "models"}, scratch, network) as pod,
        ):
            yield pod
    else:
        with pod_on_loopback(deployment, fleet_dir / "models", scratch) as pod:
            yield pod


def test_dashboard_and_adapter_queries_move_with_load(fleet_dir: Path, tmp_path: Path) -> None:
    objects = list(yaml.safe_load_all((fleet_dir / "k8s" / "packserve.yaml").read_text()))
    monitors = list(yaml.safe_load_all((fleet_dir / "k8s" / "custom-resources.yaml").read_text()))
    deployment = next(m for m in objects if m["kind"] == "Deployment")
    name = deployment["metadata"]["name"]
    service = next(m for m in objects if m["kind"] == "Service" and m["metadata"]["name"] == name)
    monitor = next(m for m in monitors if m["kind"] == "ServiceMonitor" and m["metadata"]["name"] == name)
    config_maps = {m["metadata"]["name"]: m for m in objects if m["kind"] == "ConfigMap"}
    adapter = yaml.safe_load((fleet_dir / "k8s" / "prometheus-adapter-values.yaml").read_text())
    rule = adapter["rules"]["custom"][0]
    pod_name = f"{name}-0"
    namespace = monitor["metadata"]["namespace"]
    # What prometheus-adapter sends when the HPA asks for this pod's metric.
    adapter_query = (
        rule["metricsQuery"]
        .replace("<<.LabelMatchers>>", f'namespace="{namespace}",pod="{pod_name}"')
        .replace("<<.GroupBy>>", "pod")
    )
    assert adapter_query == render_adapter_query(f'namespace="{namespace}",pod="{pod_name}"', "pod")
    # The KEDA alternative's trigger, generated for the same plan and names.
    keda = keda_manifests(
        Plan.load(fleet_dir / "plan" / "plan.json"),
        DeployOptions(
            image="img:1", repository_volume="models", keda_prometheus_url="http://prometheus:9090"
        ),
    )
    keda_query = next(k for k in keda if k["metadata"]["name"] == name)["spec"]["triggers"][0]["metadata"][
        "query"
    ]

    scratch = tmp_path / "pod"
    scratch.mkdir()
    with scraped_pod(deployment, config_maps, fleet_dir, scratch) as pod:
        deadline = time.monotonic() + 300
        while http_status(pod.url("http", "/v2/health/ready"), timeout=2) != 200:
            assert pod.process.poll() is None and time.monotonic() < deadline, pod.log_tail()
            time.sleep(0.2)
        prometheus = Prometheus(scrape_config(monitor, service, pod, pod_name), tmp_path)
        try:
            report = measure(
                prometheus, pod, monitor["metadata"]["name"], (adapter_query, keda_query), deployment
            )
        finally:
            prometheus.stop()
            pod.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            pod.process.send_signal(signal.SIGTERM)  # the second skips the drain delay
            assert pod.process.wait(timeout=60) == 0
    print("prometheus:", json.dumps(report, indent=1))


def measure(
    prometheus: Prometheus, pod: RunningPod, job: str, scaling: tuple[str, str], deployment: dict[str, Any]
) -> dict[str, Any]:
    prometheus.wait_up(job)
    time.sleep(2)
    with urllib.request.urlopen(pod.url("metrics", "/metrics"), timeout=10) as reply:
        has_gpu = b"nv_gpu_utilization" in reply.read()
    model = deployment["spec"]["template"]["metadata"]["annotations"]["packserve.io/models"].split(",")[0]
    metadata = model_metadata(pod.ip, pod.port("http"), model)
    load = Load(
        pod.ip,
        pod.port("http"),
        model,
        infer_body(metadata),
        threads=8,
        bad_body=infer_body(metadata, bad=True),
        bad_every=10,
    )
    before = time.time()
    load.start()
    time.sleep(LOAD_S)
    counts = load.stop()
    load_end = time.time()
    assert counts.failed == 0 and counts.ok > 0 and load.rejected > 0, counts.failures[:5]
    time.sleep(7)  # past every 5 s window
    after = time.time()

    report: dict[str, Any] = {
        "load": {"ok": counts.ok, "rejected_on_purpose": load.rejected, "seconds": LOAD_S}
    }
    for expr in [*dashboard_queries(), *scaling]:
        query = as_grafana_would(expr)
        values = {
            "before": peak(prometheus.query(query, before - 0.5)),
            "during": peak(prometheus.query_range(query, before + 3, load_end)),
            "after": peak(prometheus.query(query, after)),
        }
        report[expr] = values
        metric = expr.split("{", 1)[0]
        if metric.startswith("nv_gpu_"):
            # Data only where NVML sees a GPU; then it must come through Prometheus too.
            assert (values["during"] is not None) == has_gpu, (expr, values)
        elif metric in MACHINE_GAUGES or metric in STATIC:
            assert values["during"] is not None and values["during"] > 0, (expr, values)
        else:
            # Request-driven: nothing (or 0) without load, a positive value under it.
            assert values["before"] in (None, 0.0), (expr, values)
            assert values["during"] is not None and values["during"] > 0, (expr, values)
            if expr not in scaling:  # their 1 m window still holds the load
                assert values["after"] in (None, 0.0), (expr, values)
    return report
