"""What the generated manifests promise about serving: reachable servers, a drain the grace period
covers, an HPA from base load to peak on the adapter's metric, and one-line refusals of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from packserve.cli import app
from packserve.errors import InvalidArgumentError
from packserve.planning.capacity.planner import PlanOptions, plan
from packserve.planning.output.k8s import DeployOptions, build_manifests, keda_manifests
from packserve.planning.output.k8s_inputs import ReplicaBounds
from packserve.planning.output.k8s_scaling import ADAPTER_QUERY, QUEUE_METRIC, adapter_values
from tests.planning.planning_synthetic import LinearModel, linear_profile


@pytest.fixture(scope="module")
def busy_plan():  # type: ignore[no-untyped-def]
    # Enough load that the peak needs several pods, so base and peak replica counts differ.
    models = [LinearModel(n, 2, 0.5, 6000) for n in "abc"]
    return plan(linear_profile(models), PlanOptions(3000, 100, 16 * 1024**3, peak_factor=4.0))


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_servers_listen_everywhere_and_drain_within_the_grace_period(busy_plan) -> None:  # type: ignore[no-untyped-def]
    options = DeployOptions(image="img:1", repository_volume="models", kserve=True)
    manifests = build_manifests(busy_plan, options)
    for deployment in (m for m in manifests if m["kind"] == "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        args = spec["containers"][0]["args"]
        assert _flag(args, "--host") == "0.0.0.0"
        delay, drain = float(_flag(args, "--drain-delay-secs")), float(_flag(args, "--exit-timeout-secs"))
        assert delay > 0 and spec["terminationGracePeriodSeconds"] > delay + drain
        readiness = spec["containers"][0]["readinessProbe"]
        # A load balancer watching only the probe sees not-ready before the listeners close.
        assert readiness["periodSeconds"] * readiness["failureThreshold"] <= delay
    runtime = next(m for m in manifests if m["kind"] == "ClusterServingRuntime")
    assert _flag(runtime["spec"]["containers"][0]["args"], "--host") == "0.0.0.0"


def test_hpa_spans_base_load_to_peak_and_scales_down_slowly(busy_plan) -> None:  # type: ignore[no-untyped-def]
    manifests = build_manifests(busy_plan, DeployOptions(image="img:1", repository_volume="models"))
    hpas = [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"]
    assert len(hpas) == len(busy_plan.pods)
    assert any(pod.replicas >= 4 for pod in busy_plan.pods)
    for hpa, pod in zip(hpas, busy_plan.pods, strict=True):
        spec = hpa["spec"]
        assert spec["maxReplicas"] == pod.replicas
        assert spec["minReplicas"] == max(1, -(-pod.replicas // 4))  # ceil(peak / peak factor)
        assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
        assert spec["metrics"][0]["pods"]["metric"]["name"] == QUEUE_METRIC
    bounded = build_manifests(
        busy_plan, DeployOptions(image="img:1", repository_volume="models", replicas=ReplicaBounds(2, 9))
    )
    assert {
        (m["spec"]["minReplicas"], m["spec"]["maxReplicas"])
        for m in bounded
        if m["kind"] == "HorizontalPodAutoscaler"
    } == {(2, 9)}


def test_adapter_rule_names_the_hpa_metric_from_packserve_counters() -> None:
    (rule,) = adapter_values()["rules"]["custom"]
    assert rule["name"]["as"] == QUEUE_METRIC
    assert rule["metricsQuery"] == ADAPTER_QUERY
    assert "nv_inference_queue_duration_us" in rule["seriesQuery"]
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}


def test_keda_scaled_objects_use_the_same_signal(busy_plan) -> None:  # type: ignore[no-untyped-def]
    options = DeployOptions(image="img:1", repository_volume="models", keda_prometheus_url="http://prom:9090")
    objects = keda_manifests(busy_plan, options)
    assert len(objects) == len(busy_plan.pods)
    trigger = objects[0]["spec"]["triggers"][0]
    assert (
        trigger["type"] == "prometheus" and "nv_inference_queue_duration_us" in trigger["metadata"]["query"]
    )
    assert keda_manifests(busy_plan, replace(options, keda_prometheus_url=None)) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (DeployOptions(image="img:1", repository_volume="Bad PVC!"), "PersistentVolumeClaim"),
        (DeployOptions(image="registry.example/packserve 0.1", repository_volume="m"), "image reference"),
        (DeployOptions(image="img:1", repository_image="models image:1"), "image reference"),
        (
            DeployOptions(image="img:1", repository_volume="m", replicas=ReplicaBounds(0, None)),
            "--min-replicas",
        ),
        (
            DeployOptions(image="img:1", repository_volume="m", replicas=ReplicaBounds(None, 10**6)),
            "--max-replicas",
        ),
        (DeployOptions(image="img:1", repository_volume="m", replicas=ReplicaBounds(5, 2)), "above"),
    ],
)
def test_bad_names_images_and_replica_counts_are_refused(
    busy_plan, options: DeployOptions, message: str
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgumentError, match=message):
        build_manifests(busy_plan, options)


def _deploy_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "packserve", "deploy", "k8s", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assert_one_line_exit_2(code: int, stderr: str, needle: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("packserve deploy k8s: "), lines


def test_cli_refuses_bad_input_with_exit_2_and_one_line(busy_plan, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan_file = tmp_path / "plan.json"
    busy_plan.save(plan_file)
    absurd = json.loads(plan_file.read_text())
    absurd["pods"][0]["replicas"] = 10**7
    (tmp_path / "absurd.json").write_text(json.dumps(absurd))
    base = ["--plan", str(plan_file), "--out", str(tmp_path / "k8s")]
    # The real process once (exit status and stderr as a shell sees them), then in-process.
    run = _deploy_process(["--image", "img:1", "--repository-volume", "Bad PVC!", *base], tmp_path)
    _assert_one_line_exit_2(run.returncode, run.stderr, "Bad PVC!")
    assert not (tmp_path / "k8s").exists()
    cases = [
        (["--image", "registry.example/packserve 0.1", "--repository-volume", "m", *base], "image reference"),
        (
            ["--image", "img:1", "--repository-volume", "m", "--max-replicas", "100000", *base],
            "--max-replicas",
        ),
        (["--image", "img:1", "--repository-volume", "m", "--min-replicas", "0", *base], "--min-replicas"),
        (
            ["--image", "img:1", "--repository-volume", "m", "--plan", str(tmp_path / "absurd.json")],
            "replica count",
        ),
    ]
    runner = CliRunner()
    for args, needle in cases:
        result = runner.invoke(app, ["deploy", "k8s", *args])
        _assert_one_line_exit_2(result.exit_code, result.stderr, needle)
    good = runner.invoke(app, ["deploy", "k8s", "--image", "img:1", "--repository-volume", "m", *base])
    assert good.exit_code == 0, good.output
    values = yaml.safe_load((tmp_path / "k8s" / "prometheus-adapter-values.yaml").read_text())
    assert values == adapter_values()
