"""The pipeline's models run in-process in a plain loop: no server, no queues, no protocol.

Each worker thread owns its own backend instances (over weights loaded once and shared, as the
server's instances share them) and runs whole batches of images through every step. With one
worker per core the two cores are both busy, which is the most this machine can do with these
models and these per-model settings (one intra-op thread each, from the configs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench.vision_stack_baseline.pipeline import LoadedBackend, LocalModels, PipelineExecutor
from packserve.errors import InvalidArgumentError
from packserve.model_spec import ModelSpec


@dataclass(frozen=True)
class BareLoopPoint:
    batch_size: int  # images per pass through the pipeline (rows per execution of each batching model)
    workers: int  # threads, each running its own loop
    images: int  # images completed
    seconds: float  # from the common start until the last worker's last batch ended

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def bare_loop(
    ensemble: ModelSpec,
    specs: Mapping[str, ModelSpec],
    backends: Mapping[str, LoadedBackend],
    images: Sequence[bytes],
    batch_size: int,
    workers: int,
    duration_s: float,
) -> BareLoopPoint:
    """Images/s of `workers` threads each running batches of `batch_size` images (cycling through
    `images`) for at least `duration_s`, after one warm-up batch per worker."""
    if batch_size < 1 or workers < 1 or not images:
        raise InvalidArgumentError(
            f"bare loop needs batch_size >= 1, workers >= 1 and images; got {batch_size}, {workers}, "
            f"{len(images)} image(s)"
        )
    batch = [images[i % len(images)] for i in range(batch_size)]
    executors = [
        (PipelineExecutor(ensemble, specs, local), local)
        for local in (LocalModels(backends, f"bare{w}") for w in range(workers))
    ]
    ready = threading.Barrier(workers + 1)
    counts = [0] * workers
    finished = [0.0] * workers
    window: list[float] = []

    def loop(index: int) -> None:
        executor = executors[index][0]
        executor.run(batch)  # warm-up: first runs allocate arenas and fill caches
        ready.wait()
        ready.wait()  # the main thread has set the window
        # Whole batches until the window has passed; the time runs to the end of the last one,
        # so a long final batch is neither dropped nor counted for free.
        while time.monotonic() < window[1]:
            executor.run(batch)
            counts[index] += len(batch)
        finished[index] = time.monotonic()

    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="bare-loop") as pool:
            futures = [pool.submit(loop, w) for w in range(workers)]
            ready.wait()
            start = time.monotonic()
            window.extend((start, start + duration_s))
            ready.wait()
            for future in futures:
                future.result()
    finally:
        for _, local in executors:
            local.close()
    return BareLoopPoint(batch_size, workers, sum(counts), max(finished) - window[0])
