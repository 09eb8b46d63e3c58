"""Kubernetes manifests for a plan: one Deployment, Service, HPA and PDB per pod type, a ConfigMap
with the planned model-config patch, a ServiceMonitor, and optionally a KServe runtime.

The model repository comes from a PVC or an image; either way an init container copies it into an
emptyDir and applies the patch (`packserve deploy apply-patch`), so the server reads plain
config.pbtxt files. Pure: returns dictionaries; the CLI writes them as YAML.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from packserve.errors import InvalidArgumentError
from packserve.planning.plan_schema import Plan, PodPlan

Manifest = dict[str, Any]

HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
_REPOSITORY = "/models"
_SOURCE = "/models-source"
_PATCH_DIR = "/etc/packserve"
# The per-pod queue-time metric the Prometheus adapter exposes through custom.metrics.k8s.io,
# derived from rate(nv_inference_queue_duration_us) / rate(nv_inference_request_success).
QUEUE_METRIC = "packserve_queue_duration_us_per_request"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class DeployOptions:
    image: str
    namespace: str = "default"
    name: str = "packserve"
    repository_volume: str | None = None  # PVC holding the model repository
    repository_image: str | None = None  # image whose /models holds the repository
    max_replicas_factor: float = 2.0  # HPA max = planned replicas x this
    kserve: bool = False
    console: bool = False  # the web console (/console) stays off in a cluster unless asked for


def build_manifests(plan: Plan, options: DeployOptions) -> list[Manifest]:
    _check(options)
    manifests: list[Manifest] = []
    for pod in plan.pods:
        app = _app_name(options.name, pod)
        manifests.extend(
            [
                _config_map(plan, pod, app, options),
                _deployment(plan, pod, app, options),
                _service(app, options),
                _hpa(pod, app, plan, options),
                _pdb(pod, app, options),
                _service_monitor(app, options),
            ]
        )
    if options.kserve:
        manifests.extend(kserve_manifests(plan, options))
    return manifests


def is_core(manifest: Manifest) -> bool:
    """Resources whose schema ships with Kubernetes (the rest are CRDs)."""
    group = str(manifest["apiVersion"]).split("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def _check(options: DeployOptions) -> None:
    if bool(options.repository_volume) == bool(options.repository_image):
        raise InvalidArgumentError("give exactly one of --repository-volume (a PVC) or --repository-image")
    if not options.image:
        raise InvalidArgumentError("--image must name the packserve container image")
    for label, value in (("namespace", options.namespace), ("name", options.name)):
        if not _DNS_LABEL.match(value) or len(value) > 40:
            raise InvalidArgumentError(
                f"{label} '{value}' must be a DNS label (a-z, 0-9, '-', at most 40 chars)"
            )


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
        "args": [
            "packserve",
            "serve",
            "--model-repository",
            _REPOSITORY,
            "--model-control-mode",
            "explicit",
            *(arg for name in pod.load_models() for arg in ("--load-model", name)),
            "--http-port",
            str(HTTP_PORT),
            "--grpc-port",
            str(GRPC_PORT),
            "--metrics-port",
            str(METRICS_PORT),
            "--console" if options.console else "--no-console",
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": resources,
        "volumeMounts": [{"name": "models", "mountPath": _REPOSITORY, "readOnly": True}],
        # Loading models can take minutes; liveness waits for startup to succeed first.
        "startupProbe": _probe("/v2/health/ready", 5, 60),
        "readinessProbe": _probe("/v2/health/ready", 5, 3),
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
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(app, app, options),
        "spec": {
            "replicas": pod.replicas,
            "selector": {"matchLabels": _selector(app)},
            "template": {
                "metadata": {"labels": _selector(app), "annotations": {"packserve.io/models": models}},
                "spec": {
                    "terminationGracePeriodSeconds": 45,
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


def _hpa(pod: PodPlan, app: str, plan: Plan, options: DeployOptions) -> Manifest:
    # Scale before the queue eats the latency budget: target half the worst model's queue share.
    queue_budget_us = max(1000, int(min(m.budget_ms - m.batch_latency_ms for m in pod.models) * 500))
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(app, app, options),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": app},
            "minReplicas": max(1, pod.replicas),
            "maxReplicas": max(pod.replicas + 1, int(pod.replicas * options.max_replicas_factor)),
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": QUEUE_METRIC},
                        "target": {"type": "AverageValue", "averageValue": str(queue_budget_us)},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
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
                    "args": [
                        "packserve",
                        "serve",
                        "--model-repository",
                        "/mnt/models",
                        "--http-port",
                        "8080",
                        "--grpc-port",
                        "9000",
                        "--console" if options.console else "--no-console",
                    ],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
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
        services.append(
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": app, "namespace": options.namespace},
                "spec": {
                    "predictor": {
                        "minReplicas": pod.replicas,
                        "maxReplicas": max(pod.replicas + 1, int(pod.replicas * options.max_replicas_factor)),
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
