"""The layout packserve replaces: one `packserve serve` process per model, glue in the client.

Each neural model gets its own server process with a one-model repository (the same config and
weights as in the ensemble). The client stands in for the four teams that each owned one branch:
per image, every team decodes the JPEG itself and preprocesses for its own model (the ensemble's
decode step restricted to that team's outputs, same code), calls its model server(s) over HTTP,
and post-processes in the client (crops for O-Net / text classifier / recognizer included). The
four teams run at the same time, so an image's latency is its slowest branch - the most generous
reading of that layout. What it cannot share is exactly what packserve shares: one decode, one
process, one set of cores scheduled together.

Threading: each load-generator worker owns four team threads; every team thread owns its own
backend instances and HTTP clients.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient

from bench.suite.server_process import ServerPorts, ServerProcess, pick_free_ports
from bench.vision_stack_baseline.pipeline import (
    LoadedBackend,
    LocalModels,
    PipelineExecutor,
    Tensors,
    is_region_map,
    load_backends,
)
from packserve.errors import UnavailableError
from packserve.model_spec import ModelSpec

# The branch each team owned, as ensemble step names; the decode step is added to every team.
TEAMS: dict[str, tuple[str, ...]] = {
    "content": ("opennsfw", "content_label", "content_embedding"),
    "faces": ("retinaface", "face_decode", "face_landmarks", "face_points"),
    "text": ("text_det", "text_boxes", "text_angle", "text_angle_fix", "text_read", "text_decode"),
    "orientation": ("orientation", "orientation_label"),
}
DECODE_STEP = "vision_preprocess"


def served_models(specs: Mapping[str, ModelSpec]) -> list[str]:
    """The models that get a server of their own: every model with weights (not the decode step,
    post-processing ops or region maps, which the teams' clients did themselves)."""
    return sorted(n for n, s in specs.items() if s.platform == "onnxruntime_onnx")


def single_model_repositories(repository: Path, models: Sequence[str], root: Path) -> dict[str, Path]:
    """<root>/<model>/<model>/...: a copy of each model's folder as a repository of its own."""
    out: dict[str, Path] = {}
    for model in models:
        target = root / model
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(repository / model, target / model)
        out[model] = target
    return out


@contextmanager
def model_servers(
    repositories: Mapping[str, Path], log_dir: Path, timeout_s: float = 240.0
) -> Iterator[dict[str, str]]:
    """One started server per model (started side by side), model -> "host:port" of its HTTP
    endpoint; all stopped with SIGTERM however the block ends."""
    ports = pick_free_ports(3 * len(repositories))
    servers = {
        model: ServerProcess(
            repo, ServerPorts(*ports[3 * i : 3 * i + 3]), log_dir / f"server_{model}.log", [model]
        )
        for i, (model, repo) in enumerate(repositories.items())
    }
    with ExitStack() as stack:
        for server in servers.values():
            stack.callback(server.stop)
        with ThreadPoolExecutor(len(servers)) as pool:
            starts = [pool.submit(s.start, [m], timeout_s) for m, s in servers.items()]
            for start in starts:
                start.result()
        yield {model: server.http_url for model, server in servers.items()}


class RemoteCaller:
    """A `ModelCaller`: models in `urls` over HTTP, the rest (decode, post-processing) in-process."""

    def __init__(self, specs: Mapping[str, ModelSpec], urls: Mapping[str, str], local: LocalModels) -> None:
        self._specs = specs
        self._urls = dict(urls)
        self._local = local
        # tritonclient's HTTP client runs on gevent and must stay on the thread that made it; a
        # team's calls hop between its worker's pool threads, so clients are made per thread.
        self._per_thread = threading.local()

    def close(self) -> None:
        self._local.close()

    def _client(self, model: str) -> httpclient.InferenceServerClient:
        clients: dict[str, httpclient.InferenceServerClient] | None = getattr(
            self._per_thread, "clients", None
        )
        if clients is None:
            clients = self._per_thread.clients = {}
        client = clients.get(model)
        if client is None:
            client = clients[model] = httpclient.InferenceServerClient(
                self._urls[model], network_timeout=600.0
            )
        return client

    def __call__(self, model: str, requests: Sequence[Tensors], wanted: Sequence[str]) -> list[Tensors]:
        if model not in self._urls:
            return self._local(model, requests, wanted)
        client = self._client(model)
        spec = self._specs[model]
        outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in wanted]
        results: list[Tensors] = []
        for request in requests:
            inputs = []
            for name, array in request.items():
                tensor_spec = spec.input(name)
                datatype = tensor_spec.datatype.wire_name if tensor_spec else "FP32"
                tensor = httpclient.InferInput(name, list(array.shape), datatype)
                tensor.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
                inputs.append(tensor)
            reply = client.infer(model, inputs, outputs=outputs)
            results.append({name: reply.as_numpy(name) for name in wanted})
        return results


@dataclass
class TeamClients:
    """The four teams' pipelines of one load-generator worker, each on its own thread."""

    executors: dict[str, PipelineExecutor]
    callers: list[RemoteCaller]
    pool: ThreadPoolExecutor

    def run(self, image: bytes) -> None:
        futures = [self.pool.submit(ex.run, [image]) for ex in self.executors.values()]
        for future in futures:
            future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for caller in self.callers:
            caller.close()


def team_clients(
    ensemble: ModelSpec,
    specs: Mapping[str, ModelSpec],
    local_backends: Mapping[str, LoadedBackend],
    urls: Mapping[str, str],
    label: str,
) -> TeamClients:
    executors: dict[str, PipelineExecutor] = {}
    callers: list[RemoteCaller] = []
    for team, steps in TEAMS.items():
        caller = RemoteCaller(specs, urls, LocalModels(local_backends, f"{label}_{team}"))
        callers.append(caller)
        executors[team] = PipelineExecutor(ensemble, specs, caller, only=(DECODE_STEP, *steps))
    return TeamClients(executors, callers, ThreadPoolExecutor(len(TEAMS), thread_name_prefix=label))


def local_backends_for_clients(repository: Path, specs: Mapping[str, ModelSpec]) -> dict[str, LoadedBackend]:
    """What the teams ran in their clients: the decode step and the post-processing ops."""
    served = set(served_models(specs))
    client_side = {n: s for n, s in specs.items() if n not in served and not is_region_map(s)}
    return load_backends(repository, client_side)


@dataclass(frozen=True)
class ClosedLoopResult:
    concurrency: int
    completed: int
    failed: int
    seconds: float
    latencies_s: tuple[float, ...]


def closed_loop(
    workers: Sequence[TeamClients], image: bytes, warmup_s: float, duration_s: float
) -> ClosedLoopResult:
    """`len(workers)` clients, each sending the next image as soon as the last one is done;
    images completed inside the `duration_s` window after `warmup_s` are counted."""
    start = time.monotonic()
    window_start, window_end = start + warmup_s, start + warmup_s + duration_s
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def loop(clients: TeamClients) -> None:
        while True:
            sent = time.monotonic()
            if sent >= window_end:
                return
            try:
                clients.run(image)
            except Exception as exc:  # a failed image is counted and reported, not fatal
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}")
                continue
            done = time.monotonic()
            if window_start <= done <= window_end:  # as perf_analyzer: completed in the window
                with lock:
                    latencies.append(done - sent)

    with ThreadPoolExecutor(len(workers), thread_name_prefix="per-model-client") as pool:
        for future in [pool.submit(loop, w) for w in workers]:
            future.result()
    if failures and not latencies:
        raise UnavailableError(f"per-model layout: every image failed, first error: {failures[0]}")
    return ClosedLoopResult(len(workers), len(latencies), len(failures), duration_s, tuple(latencies))
