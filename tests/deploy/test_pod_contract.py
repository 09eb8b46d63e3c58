"""The pod contract: start what the generated Deployment says, in a network namespace with its own
IP, and check it as Kubernetes would use it - probes at the pod IP on the manifest's ports and paths,
inference at the pod IP, and a rolling-update SIGTERM under load that loses no accepted request."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import triton_to_np_dtype

from tests.deploy.deploy_load import Load, http_status, infer_body, model_metadata, slow_request
from tests.deploy.deploy_pod import RunningPod, pod_network, pod_network_unavailable, run_pod

pytestmark = pytest.mark.timeout(600)
LOAD_THREADS = 4


def manifests(fleet_dir: Path) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((fleet_dir / "k8s" / "packserve.yaml").read_text()))


def probe_url(pod: RunningPod, probe: dict[str, Any]) -> str:
    get = probe["httpGet"]
    return pod.url(get["port"], get["path"])


def wait_started(pod: RunningPod) -> float:
    """Poll the startup probe as the kubelet would, for at most period x failureThreshold."""
    probe = pod.container["startupProbe"]
    deadline = time.monotonic() + probe["periodSeconds"] * probe["failureThreshold"]
    started = time.monotonic()
    while time.monotonic() < deadline:
        if pod.process.poll() is not None:
            pytest.fail(f"pod exited {pod.process.returncode} before starting:\n{pod.log_tail()}")
        if http_status(probe_url(pod, probe), timeout=2) == 200:
            return time.monotonic() - started
        time.sleep(0.2)
    pytest.fail(f"startup probe never succeeded:\n{pod.log_tail()}")


def grpc_health(pod: RunningPod) -> str:
    with grpc.insecure_channel(f"{pod.ip}:{pod.port('grpc')}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def grpc_infer_ok(pod: RunningPod, model: str, metadata: dict[str, Any]) -> bool:
    """One gRPC inference at the pod IP with zeros for every input (batch 1 where variable)."""
    client = grpcclient.InferenceServerClient(f"{pod.ip}:{pod.port('grpc')}")
    try:
        inputs = []
        for tensor in metadata["inputs"]:
            shape = [1 if d < 0 else d for d in tensor["shape"]]
            item = grpcclient.InferInput(tensor["name"], shape, tensor["datatype"])
            item.set_data_from_numpy(np.zeros(shape, dtype=triton_to_np_dtype(tensor["datatype"])))
            inputs.append(item)
        return client.infer(model, inputs, client_timeout=30).get_response() is not None
    finally:
        client.close()


def drain_delay_s(container: dict[str, Any]) -> float:
    args = container["args"]
    return float(args[args.index("--drain-delay-secs") + 1])


@pytest.fixture(scope="module")
def network_ready() -> None:
    reason = pod_network_unavailable()
    if reason:
        pytest.skip(f"no network namespace for the pod: {reason}")


def test_generated_pod_serves_at_its_ip_and_drains_without_loss(
    network_ready: None, fleet_dir: Path, tmp_path: Path
) -> None:
    objects = manifests(fleet_dir)
    config_maps = {m["metadata"]["name"]: m for m in objects if m["kind"] == "ConfigMap"}
    deployments = [m for m in objects if m["kind"] == "Deployment"]
    assert deployments
    results = []
    # One pod per pod type the plan made (issue 12 may make several).
    for index, deployment in enumerate(deployments):
        scratch = tmp_path / deployment["metadata"]["name"]
        scratch.mkdir()
        with (
            pod_network(index) as network,
            run_pod(deployment, config_maps, {"models": fleet_dir / "models"}, scratch, network) as pod,
        ):
            results.append(check_pod(pod, deployment))
    print("pod contract:", json.dumps(results, indent=1))


def check_pod(pod: RunningPod, deployment: dict[str, Any]) -> dict[str, Any]:
    container, spec = pod.container, pod.spec
    startup_s = wait_started(pod)
    probes = {
        kind: (probe_url(pod, container[kind]), http_status(probe_url(pod, container[kind])))
        for kind in ("readinessProbe", "livenessProbe")
    }
    assert all(status == 200 for _, status in probes.values()), f"{probes}\n{pod.log_tail()}"
    assert grpc_health(pod) == "SERVING"
    model = deployment["spec"]["template"]["metadata"]["annotations"]["packserve.io/models"].split(",")[0]
    http_port = pod.port("http")
    metadata = model_metadata(pod.ip, http_port, model)
    body = infer_body(metadata)
    assert grpc_infer_ok(pod, model, metadata)

    load = Load(pod.ip, http_port, model, body, LOAD_THREADS).start()
    time.sleep(1.5)
    sent_at = time.monotonic()
    pod.process.send_signal(signal.SIGTERM)
    ready_url = probe_url(pod, container["readinessProbe"])
    not_ready_at = None
    while time.monotonic() - sent_at < 10:
        status = http_status(ready_url, timeout=2)
        if status != 200:
            # An HTTP answer (Triton's 400), not a refused connection: the listener stays open.
            assert isinstance(status, int) and status >= 400, f"readiness answered {status}"
            not_ready_at = time.monotonic()
            break
        time.sleep(0.02)
    assert not_ready_at is not None, "readiness never turned false after SIGTERM"
    grpc_status = grpc_health(pod)
    live_status = http_status(probe_url(pod, container["livenessProbe"]))
    grpc_serves = grpc_infer_ok(pod, model, metadata)  # not ready, still serving gRPC too
    # Endpoint removal takes a moment: traffic keeps coming for part of the delay, then stops.
    # One more request starts late in the delay and is still arriving when the listeners close.
    delay = drain_delay_s(container)
    slow: list[int | str] = []
    straddler = threading.Thread(
        target=lambda: slow.append(slow_request(pod.ip, http_port, model, body, delay * 0.5 + 1.0))
    )
    time.sleep(delay * 0.5)
    straddler.start()
    time.sleep(delay * 0.1)
    counts = load.stop()
    straddler.join(timeout=60)
    grace = spec["terminationGracePeriodSeconds"]
    try:
        code = pod.process.wait(timeout=grace)
    except Exception:
        pytest.fail(f"pod still running {grace}s after SIGTERM:\n{pod.log_tail()}")
    exited_at = time.monotonic()
    result = {
        "deployment": deployment["metadata"]["name"],
        "pod_ip": pod.ip,
        "startup_s": round(startup_s, 2),
        "probes": probes,
        "readiness_false_after_s": round(not_ready_at - sent_at, 3),
        "grpc_health_after_sigterm": grpc_status,
        "liveness_after_sigterm": live_status,
        "grpc_infer_after_sigterm": grpc_serves,
        "accepted_ok": counts.ok,
        "accepted_ok_after_sigterm": sum(t > sent_at for t in counts.ok_times),
        "failed": counts.failed,
        "request_across_listener_close": slow[0] if slow else "no answer",
        "refused": counts.refused,
        "exit_code": code,
        "exit_after_s": round(exited_at - sent_at, 2),
        "grace_s": grace,
    }
    assert result["readiness_false_after_s"] < 1.0, result
    assert grpc_status == "NOT_SERVING", result
    assert live_status == 200 and grpc_serves, result
    assert counts.failed == 0, (result, counts.failures[:5], pod.log_tail())
    assert result["request_across_listener_close"] == 200, (result, pod.log_tail())
    assert result["accepted_ok_after_sigterm"] > 0, result
    assert code == 0, (result, pod.log_tail())
    assert result["exit_after_s"] < grace, result
    return result
