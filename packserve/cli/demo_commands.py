"""`packserve demo`: the main job in one command - build the vision stack, serve it, show results."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


@dataclass(frozen=True)
class DemoOptions:
    repository: Path
    http_port: int
    grpc_port: int
    metrics_port: int
    concurrency: str
    requests: int
    keep_serving: bool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server was not ready after {timeout_s:.0f}s")


def run_demo(options: DemoOptions, console: Console) -> None:
    from packserve.demo.build import build_vision_stack
    from packserve.demo.client import main as run_client

    console.rule("1. Build the demo model repository")
    repository = build_vision_stack(options.repository, progress=True)
    console.rule("2. Start packserve")
    command = [
        sys.executable, "-m", "packserve", "serve",
        "--model-repository", str(repository),
        "--http-port", str(options.http_port),
        "--grpc-port", str(options.grpc_port),
        "--metrics-port", str(options.metrics_port),
    ]  # fmt: skip
    console.print(" ".join(command))
    # The server's log goes to a file so the demo's own output stays readable.
    log_path = repository.parent / "packserve-server.log"
    console.print(f"server log: {log_path}")
    log_file = log_path.open("wb")
    server = subprocess.Popen(
        command, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log_file, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{options.http_port}"
    try:
        wait_ready(url, server, timeout_s=300)
        _print_models(url, console)
        console.rule("3. Send images through the vision_stack pipeline")
        run_client(
            [
                "--url", f"127.0.0.1:{options.http_port}",
                "--concurrency", options.concurrency,
                "--requests", str(options.requests),
            ]
        )  # fmt: skip
        if options.keep_serving:
            console.print(f"Serving on {url} (gRPC :{options.grpc_port}); Ctrl-C stops.")
            server.wait()
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        log_file.close()


def _print_models(url: str, console: Console) -> None:
    import json
    import urllib.request

    request = urllib.request.Request(f"{url}/v2/repository/index", data=b"{}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as reply:
        index = json.loads(reply.read())
    ready = sorted(entry["name"] for entry in index if entry.get("state") == "READY")
    broken = [f"{e['name']} ({e.get('reason', '')})" for e in index if e.get("state") != "READY"]
    console.print(f"{len(ready)} models ready in one process: {', '.join(ready)}")
    if broken:
        console.print(f"[red]not ready: {'; '.join(broken)}[/red]")


def demo_command(
    repository: Annotated[
        Path, typer.Option("--repository", help="where to build the demo repository")
    ] = Path("examples/vision_stack/generated"),
    http_port: Annotated[int, typer.Option("--http-port", help="0 = a free port")] = 0,
    concurrency: Annotated[str, typer.Option("--concurrency", help="concurrencies to measure")] = "1,4,8",
    requests: Annotated[int, typer.Option("--requests", help="requests per concurrent client")] = 4,
    keep_serving: Annotated[bool, typer.Option("--keep-serving", help="leave the server running")] = False,
) -> None:
    """Build the demo vision stack, serve it, and print what it finds in sample images."""
    options = DemoOptions(
        repository=repository,
        http_port=http_port or free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        concurrency=concurrency,
        requests=requests,
        keep_serving=keep_serving,
    )
    run_demo(options, Console())


def register(app: typer.Typer) -> None:
    from packserve.cli.extras import needs_extra

    app.command("demo")(needs_extra("demo", "demo")(demo_command))
