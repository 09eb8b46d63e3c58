"""Run a generated Deployment's pod the way a kubelet would, minus the image: in a network namespace
with its own IP (ip netns + a veth pair) and a private mount namespace where the pod's volumes are
mounted at the manifest's paths. Init containers run first, then the server container's command,
args and env exactly as written; PATH and PYTHONPATH stand in for the image (this checkout's
virtualenv), and the image's entrypoint comes from deploy/docker/Dockerfile.cpu.

`pod_network_unavailable()` says why a namespace cannot be made here (not root, no `ip`); the
tests skip with that reason only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.deploy.deploy_fleet import REPO_ROOT

LAUNCHER = Path(__file__).with_name("pod_launcher.py")
DOCKERFILE = REPO_ROOT / "deploy" / "docker" / "Dockerfile.cpu"
Manifest = dict[str, Any]


def pod_network_unavailable() -> str | None:
    if os.environ.get("PACKSERVE_TEST_NO_NETNS"):
        return "PACKSERVE_TEST_NO_NETNS is set (to exercise the fallbacks)"
    if os.geteuid() != 0:
        return "creating a network namespace needs root"
    for tool in ("ip", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed"
    name = f"psvchk{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"'ip netns add' failed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@dataclass(frozen=True)
class PodNetwork:
    namespace: str
    pod_ip: str
    host_ip: str


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


@contextlib.contextmanager
def pod_network(index: int = 0) -> Iterator[PodNetwork]:
    """A namespace whose veth end has a /30 address the host reaches directly."""
    pid = os.getpid()
    tag = f"{pid % 100000}{index}"
    namespace, host_if, pod_if = f"psvns{tag}", f"psvh{tag}", f"psvp{tag}"
    subnet = f"10.{200 + (pid >> 8) % 50}.{pid % 256}"
    base = (index % 60) * 4
    host_ip, pod_ip = f"{subnet}.{base + 1}", f"{subnet}.{base + 2}"
    _sh("ip", "netns", "add", namespace)
    try:
        _sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", pod_if)
        _sh("ip", "link", "set", pod_if, "netns", namespace)
        _sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        _sh("ip", "link", "set", host_if, "up")
        inside = ("ip", "netns", "exec", namespace)
        _sh(*inside, "ip", "addr", "add", f"{pod_ip}/30", "dev", pod_if)
        _sh(*inside, "ip", "link", "set", pod_if, "up")
        _sh(*inside, "ip", "link", "set", "lo", "up")
        yield PodNetwork(namespace, pod_ip, host_ip)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def image_entrypoint() -> list[str]:
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.startswith("ENTRYPOINT "):
            return list(json.loads(line.removeprefix("ENTRYPOINT ")))
    return []


def container_argv(container: Manifest) -> list[str]:
    return list(container.get("command", image_entrypoint())) + list(container.get("args", []))


def container_env(container: Manifest) -> dict[str, str]:
    """The manifest's env, plus what the image would provide: the venv's tools and packserve."""
    env = {item["name"]: str(item["value"]) for item in container.get("env", [])}
    image_path = f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return {"PATH": image_path, "PYTHONPATH": str(REPO_ROOT), "HOME": "/tmp", **env}


def container_port(container: Manifest, port: str | int) -> int:
    if isinstance(port, int):
        return port
    return next(int(p["containerPort"]) for p in container["ports"] if p["name"] == port)


@dataclass
class RunningPod:
    process: subprocess.Popen[bytes]
    ip: str
    container: Manifest
    spec: Manifest
    log: Path
    moved_ports: dict[int, int] | None = None  # container port -> where it really listens

    def port(self, name: str | int) -> int:
        port = container_port(self.container, name)
        return (self.moved_ports or {}).get(port, port)

    def url(self, port: str | int, path: str) -> str:
        return f"http://{self.ip}:{self.port(port)}{path}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _volume_sources(
    spec: Manifest, config_maps: dict[str, Manifest], pvcs: dict[str, Path], scratch: Path
) -> dict[str, dict[str, Any]]:
    sources: dict[str, dict[str, Any]] = {}
    for volume in spec["volumes"]:
        name = volume["name"]
        if "emptyDir" in volume:
            sources[name] = {"kind": "tmpfs"}
        elif "configMap" in volume:
            folder = scratch / f"configmap-{name}"
            folder.mkdir()
            for key, value in config_maps[volume["configMap"]["name"]]["data"].items():
                (folder / key).write_text(value, encoding="utf-8")
            sources[name] = {"kind": "bind", "source": str(folder)}
        elif "persistentVolumeClaim" in volume:
            sources[name] = {
                "kind": "bind",
                "source": str(pvcs[volume["persistentVolumeClaim"]["claimName"]]),
            }
        else:
            raise AssertionError(f"volume type of {volume} is not emulated")
    return sources


def pod_plan(
    deployment: Manifest, config_maps: dict[str, Manifest], pvcs: dict[str, Path], scratch: Path
) -> Manifest:
    """What the launcher does, as JSON: mounts (one per volume and path), init containers, server."""
    spec = deployment["spec"]["template"]["spec"]
    sources = _volume_sources(spec, config_maps, pvcs, scratch)
    containers = [*spec.get("initContainers", []), *spec["containers"]]
    mounts: dict[str, dict[str, Any]] = {}
    for container in containers:
        for mount in container.get("volumeMounts", []):
            known = mounts.setdefault(mount["mountPath"], {**sources[mount["name"]], "volume": mount["name"]})
            assert known["volume"] == mount["name"], f"two volumes at {mount['mountPath']}"
    (server,) = spec["containers"]
    read_only = [m["mountPath"] for m in server.get("volumeMounts", []) if m.get("readOnly")]
    return {
        "mounts": [{"target": path, **source} for path, source in mounts.items()],
        "init": [
            {"argv": container_argv(c), "env": container_env(c)} for c in spec.get("initContainers", [])
        ],
        "read_only_for_server": read_only,
        "server": {"argv": container_argv(server), "env": container_env(server)},
    }


@contextlib.contextmanager
def launch(plan: Manifest, scratch: Path, network: PodNetwork) -> Iterator[subprocess.Popen[bytes]]:
    """Run a launcher plan (mounts, init containers, server; optional hostname and /etc/hosts) in
    the network namespace and fresh mount and UTS namespaces. The process becomes the server."""
    # Mount points must exist in the (shared) file system; make the missing ones, remove them after.
    made = [Path(m["target"]) for m in plan["mounts"] if not Path(m["target"]).exists()]
    for path in made:
        path.mkdir(parents=True)
    plan_file = scratch / "pod.json"
    plan_file.write_text(json.dumps(plan), encoding="utf-8")
    inside = [
        "ip",
        "netns",
        "exec",
        network.namespace,
        "unshare",
        "--mount",
        "--uts",
        "--propagation",
        "private",
    ]
    with (scratch / "pod.log").open("wb") as sink:
        process = subprocess.Popen(
            [*inside, sys.executable, str(LAUNCHER), str(plan_file)], stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        time.sleep(0.2)
        for path in reversed(made):
            with contextlib.suppress(OSError):
                path.rmdir()


@contextlib.contextmanager
def run_pod(
    deployment: Manifest,
    config_maps: dict[str, Manifest],
    pvcs: dict[str, Path],
    scratch: Path,
    network: PodNetwork,
) -> Iterator[RunningPod]:
    plan = pod_plan(deployment, config_maps, pvcs, scratch)
    spec = deployment["spec"]["template"]["spec"]
    with launch(plan, scratch, network) as process:
        yield RunningPod(process, network.pod_ip, spec["containers"][0], spec, scratch / "pod.log")


@contextlib.contextmanager
def pod_on_loopback(deployment: Manifest, repository: Path, scratch: Path) -> Iterator[RunningPod]:
    """The fallback where no namespace can be made: the server container's command on 127.0.0.1,
    free ports and the repository's path instead of /models (no init containers). Only for tests
    that need a scrapeable server, not for the pod contract itself."""
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    sockets = [socket.socket() for _ in container["ports"]]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    moved = {
        int(p["containerPort"]): sock.getsockname()[1]
        for p, sock in zip(container["ports"], sockets, strict=True)
    }
    for sock in sockets:
        sock.close()
    argv = container_argv(container)
    for index, word in enumerate(argv[:-1]):
        following = argv[index + 1]
        if word == "--host":
            argv[index + 1] = "127.0.0.1"
        elif word.endswith("-port") and following.isdigit():
            argv[index + 1] = str(moved.get(int(following), following))
        elif word == "--model-repository":
            argv[index + 1] = str(repository)
    log = scratch / "pod.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, env=container_env(container), stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield RunningPod(process, "127.0.0.1", container, spec, log, moved)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
