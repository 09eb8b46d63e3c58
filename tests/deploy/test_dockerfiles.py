"""The Dockerfiles as a container runtime would run them (no Docker daemon needed): one onnxruntime
flavour per image, the CPU image's CMD started as written in its own network namespace, and its
HEALTHCHECK run inside that container's namespaces - passing when the server listens where others
reach it, failing when it listens on loopback only (the old default the check used to hide)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.deploy_fleet import REPO_ROOT
from tests.deploy.deploy_image import Image, image_plan, instructions, read_image
from tests.deploy.deploy_load import http_status
from tests.deploy.deploy_pod import launch, pod_network, pod_network_unavailable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = pytest.mark.timeout(600)
DOCKER = REPO_ROOT / "deploy" / "docker"
FLAVOURS = {"onnxruntime", "onnxruntime-gpu"}


def _requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~;\[ ]", spec.strip().strip("'\""), maxsplit=1)[0].lower()


def installed_onnxruntimes(dockerfile: Path) -> set[str]:
    """Replay the image's pip commands on a set of package names (this project's extras expanded
    from pyproject.toml) and return the onnxruntime flavours left at the end."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    installed: set[str] = set()
    for keyword, rest in instructions(dockerfile):
        if keyword != "RUN":
            continue
        for step in rest.split("&&"):
            words = shlex.split(step)
            if words[:2] == ["pip", "install"]:
                for word in (w for w in words[2:] if not w.startswith("-") and "://" not in w):
                    if word.startswith("."):
                        installed |= {_requirement_name(d) for d in project["dependencies"]}
                        for extra in re.findall(r"\[([^\]]*)\]", word)[0].split(",") if "[" in word else []:
                            installed |= {_requirement_name(d) for d in extras[extra.strip()]}
                    else:
                        installed.add(_requirement_name(word))
            elif words[:2] == ["pip", "uninstall"]:
                installed -= {w.lower() for w in words[2:] if not w.startswith("-")}
    return installed & FLAVOURS


def test_each_image_has_one_onnxruntime_flavour() -> None:
    assert installed_onnxruntimes(DOCKER / "Dockerfile.cpu") == {"onnxruntime"}
    assert installed_onnxruntimes(DOCKER / "Dockerfile.gpu") == {"onnxruntime-gpu"}


def test_both_images_run_and_check_the_same_reachable_server() -> None:
    cpu, gpu = read_image(DOCKER / "Dockerfile.cpu"), read_image(DOCKER / "Dockerfile.gpu")
    assert cpu.argv == gpu.argv and cpu.healthcheck == gpu.healthcheck
    assert cpu.argv[cpu.argv.index("--host") + 1] == "0.0.0.0"
    assert "127.0.0.1" not in cpu.healthcheck and "localhost" not in cpu.healthcheck


def _healthcheck(pid: int, command: str) -> int:
    """Run the HEALTHCHECK command inside the container's network, mount and UTS namespaces."""
    inside = ["nsenter", "-t", str(pid), "-n", "-m", "-u", "sh", "-c", command]
    return subprocess.run(inside, capture_output=True, timeout=30, check=False).returncode


def _wait_listening(pid: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while _healthcheck(pid, "curl -fsS http://127.0.0.1:8000/v2/health/ready") != 0:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "server never answered on loopback"
        time.sleep(0.3)


def test_cpu_image_serves_at_its_address_and_its_healthcheck_sees_that(tmp_path: Path) -> None:
    reason = pod_network_unavailable()
    if reason:
        pytest.skip(f"no network namespace for the container: {reason}")
    image = read_image(DOCKER / "Dockerfile.cpu")
    loopback_only = [("127.0.0.1" if a == "0.0.0.0" else a) for a in image.argv]
    results = {}
    for index, (label, argv) in enumerate(
        (("as written", image.argv), ("bound to 127.0.0.1", loopback_only))
    ):
        scratch = tmp_path / f"container{index}"
        (scratch / "models").mkdir(parents=True)  # an empty repository: the listeners are the point
        with pod_network(20 + index) as network:
            plan = image_plan(
                Image(image.env, argv, image.healthcheck),
                {"/models": scratch / "models"},
                f"packserve-{index}",
                network.pod_ip,
                scratch,
            )
            with launch(plan, scratch, network) as process:
                _wait_listening(process.pid, process, scratch / "pod.log")
                results[label] = {
                    "healthcheck_exit": _healthcheck(process.pid, image.healthcheck),
                    "ready_from_outside": http_status(
                        f"http://{network.pod_ip}:8000/v2/health/ready", timeout=3
                    ),
                }
    print("dockerfile:", results)
    assert results["as written"] == {"healthcheck_exit": 0, "ready_from_outside": 200}, results
    assert results["bound to 127.0.0.1"]["healthcheck_exit"] != 0, results
    assert results["bound to 127.0.0.1"]["ready_from_outside"] != 200, results
