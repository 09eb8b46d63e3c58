"""Manifests: core resources pass `kubernetes-validate --strict`; CRD resources are checked by shape."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from packserve.errors import InvalidArgumentError
from packserve.planning.capacity.planner import PlanOptions, plan
from packserve.planning.commands import deploy_k8s_command
from packserve.planning.output.k8s import QUEUE_METRIC, DeployOptions, build_manifests, is_core
from tests.planning.planning_synthetic import LinearModel, linear_profile

K8S_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def two_pod_plan():  # type: ignore[no-untyped-def]
    models = [LinearModel(n, 2, 0.5, 6000) for n in "abc"]
    return plan(linear_profile(models), PlanOptions(300, 100, 16 * 1024**3))


@pytest.mark.parametrize(
    "options",
    [
        DeployOptions(image="registry.example/packserve:0.1", repository_volume="models-pvc", kserve=True),
        DeployOptions(image="registry.example/packserve:0.1", repository_image="registry.example/models:1"),
    ],
)
def test_core_manifests_validate_strictly(two_pod_plan, options: DeployOptions) -> None:  # type: ignore[no-untyped-def]
    manifests = build_manifests(two_pod_plan, options)
    core = [m for m in manifests if is_core(m)]
    kinds = sorted({m["kind"] for m in core})
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    for manifest in core:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    deployments = [m for m in core if m["kind"] == "Deployment"]
    assert len(deployments) == len(two_pod_plan.pods)
    for deployment, pod in zip(deployments, two_pod_plan.pods, strict=True):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert deployment["spec"]["replicas"] == pod.replicas
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        assert container["args"][:4] == ["packserve", "serve", "--model-repository", "/models"]
        assert [p["containerPort"] for p in container["ports"]] == [8000, 8001, 8002]
    hpa = next(m for m in core if m["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == QUEUE_METRIC


def test_custom_resources_have_the_right_shape(two_pod_plan) -> None:  # type: ignore[no-untyped-def]
    options = DeployOptions(image="img:1", repository_volume="pvc", kserve=True)
    custom = [m for m in build_manifests(two_pod_plan, options) if not is_core(m)]
    monitors = [m for m in custom if m["kind"] == "ServiceMonitor"]
    assert len(monitors) == len(two_pod_plan.pods)
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "packserve"
    runtime = next(m for m in custom if m["kind"] == "ClusterServingRuntime")
    assert "v2" in runtime["spec"]["protocolVersions"]
    services = [m for m in custom if m["kind"] == "InferenceService"]
    assert all(s["spec"]["predictor"]["model"]["storageUri"] == "pvc://pvc" for s in services)


def test_written_yaml_passes_the_cli_validator(two_pod_plan, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan_file = tmp_path / "plan.json"
    two_pod_plan.save(plan_file)
    written = deploy_k8s_command(
        plan_file, DeployOptions(image="img:1", repository_volume="pvc"), tmp_path / "k8s"
    )
    core_file = written[0]
    assert all(is_core(m) for m in yaml.safe_load_all(core_file.read_text()))
    validator = shutil.which("kubernetes-validate") or str(
        Path(sys.executable).with_name("kubernetes-validate")
    )
    run = subprocess.run(
        [validator, "--strict", "-k", K8S_VERSION, str(core_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (DeployOptions(image="i"), "exactly one"),
        (DeployOptions(image="i", repository_volume="p", repository_image="m"), "exactly one"),
        (DeployOptions(image="i", repository_volume="p", namespace="Bad_NS"), "namespace"),
        (DeployOptions(image="i", repository_image="m", kserve=True), "KServe"),
    ],
)
def test_bad_deploy_options_say_why(two_pod_plan, options: DeployOptions, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError, match=message):
        build_manifests(two_pod_plan, options)


def test_cpu_plan_requests_the_profiled_cores_and_loads_the_whole_pipeline() -> None:
    from dataclasses import replace

    from packserve.planning.formats.profile_schema import EnsembleStep, ModelProfile

    base = linear_profile(
        [LinearModel("pre", 2, 1, 200), LinearModel("crops", 3, 1, 10), LinearModel("inner", 1, 1, 100)],
        ensembles={"pipe": ["pre", "crops"]},
    )
    cpu_points = {m.name: tuple(replace(p, cpu_ms=p.compute_ms) for p in m.points) for m in base.models}
    models = tuple(
        ModelProfile(m.name, "region_map", "", 0, cpu_points[m.name], (EnsembleStep("inner", (), ()),))
        if m.name == "crops"
        else replace(m, points=cpu_points[m.name])
        for m in base.models
    )
    profile = replace(
        base, device="cpu", device_name="cpu (x86_64, 4 cores)", models=models, extra={"cpu_cores": 4}
    )
    cpu_plan = plan(profile, PlanOptions(20, 500, 8 * 1024**3, peak_factor=1.0))
    manifests = build_manifests(cpu_plan, DeployOptions(image="img:1", repository_volume="pvc"))
    for manifest in (m for m in manifests if is_core(m)):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"] == "4"
    assert container["resources"]["limits"]["cpu"] == "4"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    loaded = [container["args"][i + 1] for i, a in enumerate(container["args"]) if a == "--load-model"]
    assert loaded == ["crops", "inner", "pipe", "pre"]
    config_map = next(m for m in manifests if m["kind"] == "ConfigMap")
    assert "crops" not in config_map["data"]["config-patch.json"]  # the core runs it: nothing to set


@pytest.mark.parametrize("console", [False, True])
def test_the_web_console_is_off_in_pods_unless_asked(two_pod_plan, console: bool) -> None:  # type: ignore[no-untyped-def]
    import click
    import typer.main

    from packserve.cli import app

    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    options = DeployOptions(image="i:1", repository_volume="pvc", kserve=True, console=console)
    containers = [
        m["spec"]["template"]["spec"]["containers"][0] for m in build_manifests(two_pod_plan, options) if m["kind"] == "Deployment"
    ]
    containers += [
        m["spec"]["containers"][0] for m in build_manifests(two_pod_plan, options) if m["kind"] == "ClusterServingRuntime"
    ]
    assert len(containers) == len(two_pod_plan.pods) + 1
    for container in containers:
        assert ("--console" if console else "--no-console") in container["args"]
        # The serve command's own parser accepts the arguments as written.
        with click.Context(serve) as context:
            parsed = serve.parse_args(context, container["args"][2:])
            assert parsed == [] and context.params["console"] is console
