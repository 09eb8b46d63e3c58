"""Kubernetes manifests for a plan: one Deployment, Service, HPA and PDB per pod type, a ConfigMap
with the planned model-config patch, a ServiceMonitor, and optionally a KServe runtime.

Every server binds 0.0.0.0 (probes, the Service and Prometheus reach it at the pod IP) and stops
readiness-first: on SIGTERM it answers not-ready for DRAIN_DELAY_S while still serving, so the
endpoint is gone before the listeners close, then finishes what it accepted within EXIT_TIMEOUT_S;
the grace period covers both with room to spare.

The model repository comes from a PVC or an image; either way an init container copies it into an
emptyDir and applies the patch (`packserve deploy apply-patch`), so the server reads plain
config.pbtxt files. Pure: returns dictionaries; the CLI writes them as YAML.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from packserve.errors import InvalidArgumentError
from packserve.planning.formats.plan_schema import Plan, PodPlan
from packserve.planning.output.k8s_inputs import (
    ReplicaBounds,
    check_bounds,
    check_dns_label,
    check_image,
    check_pvc_name,
    check_replicas,
)
from packserve.planning.output.k8s_scaling import QUEUE_METRIC, hpa, keda_scaled_object, replica_range

Manifest = dict[str, Any]

HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
_REPOSITORY = "/models"
_SOURCE = "/models-source"
_PATCH_DIR = "/etc/packserve"
LISTEN_ADDRESS = "0.0.0.0"
# Endpoint removal reaches kube-proxy and ingresses within seconds; readiness fails within
# READINESS_PERIOD_S x READINESS_FAILURES for load balancers that only watch the probe.
DRAIN_DELAY_S = 5
EXIT_TIMEOUT_S = 30
GRACE_PERIOD_S = DRAIN_DELAY_S + EXIT_TIMEOUT_S + 10
READINESS_PERIOD_S, READINESS_FAILURES = 2, 2
__all__ = [
    "QUEUE_METRIC",
    "DeployOptions",
    "build_manifests",
    "is_core",
    "keda_manifests",
    "kserve_manifests",
    "serve_args",
]


@dataclass(frozen=True, slots=True)
class DeployOptions:
    image: str
    namespace: str = "default"
    name: str = "packserve"
    repository_volume: str | None = None  # PVC holding the model repository
    repository_image: str | None = None  # image whose /models holds the repository
    replicas: ReplicaBounds = field(default_factory=ReplicaBounds)  # HPA bounds; from the plan where unset
    kserve: bool = False
    keda_prometheus_url: str | None = None  # also write a KEDA ScaledObject querying this server
    console: bool = False  # the web console (/console) stays off in a cluster unless asked for


def build_manifests(plan: Plan, options: DeployOptions) -> list[Manifest]:
    _check(plan, options)
    manifests: list[Manifest] = []
    for pod in plan.pods:
        app = _app_name(options.name, pod)
        replicas = replica_range(plan, pod, options.replicas.minimum, options.replicas.maximum)
        manifests.extend(
            [
                _config_map(plan, pod, app, options),
                _deployment(plan, pod, app, options),
                _service(app, options),
                hpa(pod, _meta(app, app, options), replicas),
                _pdb(pod, app, options),
                _service_monitor(app, options),
            ]
        )
    if options.kserve:
        manifests.extend(kserve_manifests(plan, options))
    return manifests


def keda_manifests(plan: Plan, options: DeployOptions) -> list[Manifest]:
    """KEDA ScaledObjects: apply these instead of the HPAs (KEDA makes its own), not beside them."""
    url = options.keda_prometheus_url
    if not url:
        return []
    objects = []
    for pod in plan.pods:
        app = _app_name(options.name, pod)
        replicas = replica_range(plan, pod, options.replicas.minimum, options.replicas.maximum)
        objects.append(keda_scaled_object(pod, _meta(app, app, options), replicas, url))
    return objects


def serve_args(
    models: tuple[str, ...], repository: str, ports: tuple[int, int, int], console: bool = False
) -> list[str]:
    """The container's `packserve serve` command line: reachable, draining readiness-first."""
    http_port, grpc_port, metrics_port = ports
    return [
        "packserve",
        "serve",
        "--model-repository",
        repository,
        *(["--model-control-mode", "explicit"] if models else []),
        *(arg for name in models for arg in ("--load-model", name)),
        "--host",
        LISTEN_ADDRESS,
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--metrics-port",
        str(metrics_port),
        "--drain-delay-secs",
        str(DRAIN_DELAY_S),
        "--exit-timeout-secs",
        str(EXIT_TIMEOUT_S),
        "--console" if console else "--no-console",
    ]


def is_core(manifest: Manifest) -> bool:
    """Resources whose schema ships with Kubernetes (the rest are CRDs)."""
    group = str(manifest["apiVersion"]).split("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def _check(plan: Plan, options: DeployOptions) -> None:
    if bool(options.repository_volume) == bool(options.repository_image):
        raise InvalidArgumentError("give exactly one of --repository-volume (a PVC) or --repository-image")
    check_image("--image", options.image)
    if options.repository_image:
        check_image("--repository-image", options.repository_image)
    if options.repository_volume:
        check_pvc_name("--repository-volume", options.repository_volume)
    check_dns_label("--namespace", options.namespace)
    check_dns_label("name", options.name)
    check_bounds(options.replicas)
    for pod in plan.pods:
        check_replicas(f"the plan's replica count for {pod.name}:", pod.replicas)


def _app_name(base: str, pod: PodPlan) -> str:
    suffix = re.sub(r"[^a-z0-9-]+", "-", pod.name.lower()).strip("-")
    return f"{base}-{suffix}"[:63].rstrip("-")


def _meta(name: str, app: str, options: DeployOptions) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": options.namespace,
        "labels": {"app.kubernetes.io/name": "packserve", "app.kubernetes.io/instance": app},
    }


def _selector(app: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "packserve", "app.kubernetes.io/instance": app}


def _config_map(plan: Plan, pod: PodPlan, app: str, options: DeployOptions) -> Manifest:
    patches = {m.name: m.config_patch(plan.device_kind) for m in pod.models if m.tunable}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(f"{app}-config", app, options),
        "data": {"config-patch.json": json.dumps(patches, indent=2, sort_keys=True)},
    }


def _probe(path: str, period_s: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period_s,
        "failureThreshold": failures,
    }


def _cores(pod: PodPlan) -> str:
    return str(max(1, round(pod.capacity)))


def _deployment(plan: Plan, pod: PodPlan, app: str, options: DeployOptions) -> Manifest:
    gpu = plan.device_kind == "KIND_GPU"
    memory_mib = max(512, int(pod.memory_bytes * 1.5 / 1024**2))
    # A CPU pod gets the cores the plan counted on (the profiled machine's), no more, no less.
    cpu = "2" if gpu else _cores(pod)
    resources: dict[str, Any] = {
        "requests": {"cpu": cpu, "memory": f"{memory_mib}Mi"},
        "limits": {"memory": f"{memory_mib * 2}Mi"},
    }
    if not gpu:
        resources["limits"]["cpu"] = cpu
    if gpu:
        resources["limits"]["nvidia.com/gpu"] = 1
    models = ",".join(m.name for m in pod.models)
    server = {
        "name": "packserve",
        "image": options.image,
        "args": serve_args(
            pod.load_models(), _REPOSITORY, (HTTP_PORT, GRPC_PORT, METRICS_PORT), options.console
        ),
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": resources,
        "volumeMounts": [{"name": "models", "mountPath": _REPOSITORY, "readOnly": True}],
        # Loading models can take minutes; liveness waits for startup to succeed first.
        "startupProbe": _probe("/v2/health/ready", 5, 60),
        "readinessProbe": _probe("/v2/health/ready", READINESS_PERIOD_S, READINESS_FAILURES),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
    }
    volumes: list[dict[str, Any]] = [
        {"name": "models", "emptyDir": {}},
        {"name": "config-patch", "configMap": {"name": f"{app}-config"}},
    ]
    if options.repository_volume:
        volumes.append(
            {
                "name": "models-source",
                "persistentVolumeClaim": {"claimName": options.repository_volume, "readOnly": True},
            }
        )
        mounts: list[dict[str, Any]] = [
            {"name": "models-source", "mountPath": _SOURCE, "readOnly": True},
            {"name": "models", "mountPath": _REPOSITORY},
        ]
        init = [
            _init_container("copy-repository", options.image, f"cp -a {_SOURCE}/. {_REPOSITORY}/", mounts)
        ]
    else:
        # The repository image holds its files at /models; copy them into the shared emptyDir.
        mounts = [{"name": "models", "mountPath": _SOURCE}]
        command = f"cp -a {_REPOSITORY}/. {_SOURCE}/"
        init = [_init_container("copy-repository", str(options.repository_image), command, mounts)]
    init.append(
        {
            "name": "apply-plan",
            "image": options.image,
            "args": [
                "packserve",
                "deploy",
                "apply-patch",
                "--repository",
                _REPOSITORY,
                "--patch",
                f"{_PATCH_DIR}/config-patch.json",
            ],
            "volumeMounts": [
                {"name": "models", "mountPath": _REPOSITORY},
                {"name": "config-patch", "mountPath": _PATCH_DIR, "readOnly": True},
            ],
        }
    )
    metadata = _meta(app, app, options)
    shares = {m.name: m.share for m in pod.models if m.share < 1.0}
    if shares:
        # Per-model replication: this pod kind takes only this share of these models' requests; the
        # ingress in front of the kinds' Services weights its routes by it (docs/planning.md).
        metadata["annotations"] = {"packserve.io/traffic-share": json.dumps(shares, sort_keys=True)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": pod.replicas,
            "selector": {"matchLabels": _selector(app)},
            "template": {
                "metadata": {"labels": _selector(app), "annotations": {"packserve.io/models": models}},
                "spec": {
                    "terminationGracePeriodSeconds": GRACE_PERIOD_S,
                    "initContainers": init,
                    "containers": [server],
                    "volumes": volumes,
                },
            },
        },
    }


def _init_container(name: str, image: str, command: str, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "image": image, "command": ["sh", "-c", command], "volumeMounts": mounts}


def _service(app: str, options: DeployOptions) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(app, app, options),
        "spec": {
            "selector": _selector(app),
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def _pdb(pod: PodPlan, app: str, options: DeployOptions) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(app, app, options),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(app)}},
    }


def _service_monitor(app: str, options: DeployOptions) -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(app, app, options),
        "spec": {
            "selector": {"matchLabels": _selector(app)},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }


def kserve_manifests(plan: Plan, options: DeployOptions) -> list[Manifest]:
    """A ClusterServingRuntime speaking the v2 protocol and one InferenceService per pod type.
    KServe then owns scaling; use these instead of the Deployments, not beside them."""
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": options.name},
        "spec": {
            "supportedModelFormats": [{"name": "triton", "version": "2", "autoSelect": True}],
            "protocolVersions": ["v2", "grpc-v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": options.image,
                    # KServe's storage initializer puts the repository at /mnt/models.
                    "args": serve_args((), "/mnt/models", (8080, 9000, METRICS_PORT), options.console),
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "readinessProbe": {
                        "httpGet": {"path": "/v2/health/ready", "port": 8080},
                        "periodSeconds": READINESS_PERIOD_S,
                        "failureThreshold": READINESS_FAILURES,
                    },
                }
            ],
        },
    }
    if not options.repository_volume:
        raise InvalidArgumentError(
            "KServe output needs --repository-volume: its storageUri points at the PVC"
        )
    services: list[Manifest] = []
    for pod in plan.pods:
        app = _app_name(options.name, pod)
        limits: dict[str, Any] = (
            {"nvidia.com/gpu": 1} if plan.device_kind == "KIND_GPU" else {"cpu": _cores(pod)}
        )
        low, high = replica_range(plan, pod, options.replicas.minimum, options.replicas.maximum)
        services.append(
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": app, "namespace": options.namespace},
                "spec": {
                    "predictor": {
                        "minReplicas": low,
                        "maxReplicas": high,
                        "model": {
                            "modelFormat": {"name": "triton"},
                            "runtime": options.name,
                            "storageUri": f"pvc://{options.repository_volume}",
                            "resources": {"limits": limits},
                        },
                    }
                },
            }
        )
    return [runtime, *services]
