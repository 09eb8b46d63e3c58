"""What a Dockerfile says its container runs: ENV, ENTRYPOINT + CMD, HEALTHCHECK, read from the file
(continuation lines joined), and a launcher plan that runs it as a container runtime would, with
the image's files replaced by this checkout's virtualenv."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.deploy.deploy_fleet import REPO_ROOT


@dataclass(frozen=True)
class Image:
    env: dict[str, str]
    argv: list[str]
    healthcheck: str  # a shell command


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    joined: list[str] = []
    pending = ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in joined
    ]


def read_image(dockerfile: Path) -> Image:
    env: dict[str, str] = {}
    entrypoint: list[str] = []
    cmd: list[str] = []
    healthcheck = ""
    for keyword, rest in instructions(dockerfile):
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
        elif keyword == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif keyword == "CMD":
            cmd = json.loads(rest)
        elif keyword == "HEALTHCHECK":
            healthcheck = rest.split(" CMD ", 1)[1].strip()
    return Image(env, [*entrypoint, *cmd], healthcheck)


def image_plan(
    image: Image, volumes: dict[str, Path], hostname: str, ip: str, scratch: Path
) -> dict[str, Any]:
    hosts = scratch / "hosts"
    hosts.write_text(f"127.0.0.1\tlocalhost\n{ip}\t{hostname}\n", encoding="utf-8")
    venv_path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    env = {"PATH": venv_path, "PYTHONPATH": str(REPO_ROOT), "HOME": "/tmp", **image.env}
    return {
        "hostname": hostname,
        "hosts_file": str(hosts),
        "mounts": [
            {"target": target, "kind": "bind", "source": str(source)} for target, source in volumes.items()
        ],
        "server": {"argv": image.argv, "env": env},
    }
