"""What `isolation: process` costs per request: the same identity python model in-process and
isolated, with `simple`-sized (16 INT32) and image-sized (3x224x224 FP32, 588 KiB) tensors.

    .venv/bin/python bench/isolation_cost.py [--requests 2000] [--image-requests 300]

Runs the engine in this process (no HTTP: the figure is the backend's own cost), one request at a
time (latency, and CPU time of server + workers per request, which does not depend on how busy
the machine is) and 8 at a time (throughput). Prints a table and writes
bench/results/isolation_cost.json with the load average, since the box may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from packserve.backends import worker_processes
from packserve.core.engine import Engine, EngineOptions
from packserve.messages import InferRequest

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"

IDENTITY = """\
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy())]
            )
            for r in requests
        ]
"""

SHAPES = {"simple": ("TYPE_INT32", np.int32, (16,)), "image": ("TYPE_FP32", np.float32, (3, 224, 224))}


def write_models(root: Path) -> None:
    for size, (config_type, _, dims) in SHAPES.items():
        for isolation in ("none", "process"):
            name = f"{size}_{isolation}"
            (root / name / "1").mkdir(parents=True)
            (root / name / "1" / "model.py").write_text(IDENTITY)
            dims_text = ", ".join(str(d) for d in dims)
            (root / name / "config.pbtxt").write_text(
                f'name: "{name}"\nbackend: "python"\nmax_batch_size: 8\n'
                f'input [ {{ name: "IN" data_type: {config_type} dims: [ {dims_text} ] }} ]\n'
                f'output [ {{ name: "OUT" data_type: {config_type} dims: [ {dims_text} ] }} ]\n'
                "instance_group [ { count: 1, kind: KIND_CPU } ]\n"
                f'parameters {{ key: "isolation" value {{ string_value: "{isolation}" }} }}\n'
            )


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its isolated workers: load-independent cost."""
    total = time.process_time()
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in worker_processes.live_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def latency_us(engine: Engine, model: str, tensor: np.ndarray, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = await engine.infer(InferRequest(model, {"IN": tensor}))
        samples.append((time.perf_counter() - started) * 1e6)
        assert response.outputs["OUT"].shape == tensor.shape
    return samples


async def throughput(engine: Engine, model: str, tensor: np.ndarray, count: int, in_flight: int = 8) -> float:
    async def worker(n: int) -> None:
        for _ in range(n):
            await engine.infer(InferRequest(model, {"IN": tensor}))

    started = time.perf_counter()
    await asyncio.gather(*(worker(count // in_flight) for _ in range(in_flight)))
    return (count // in_flight * in_flight) / (time.perf_counter() - started)


async def main(requests: int, image_requests: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="isolation-cost-"))
    write_models(root)
    engine = await Engine.start(EngineOptions(model_repository=root))
    rows = []
    try:
        for size, (_, dtype, dims) in SHAPES.items():
            tensor = np.ones((1, *dims), dtype=dtype)
            count = requests if size == "simple" else image_requests
            for isolation in ("none", "process"):
                model = f"{size}_{isolation}"
                await latency_us(engine, model, tensor, 50)  # warm up
                cpu_before = cpu_seconds()
                samples = sorted(await latency_us(engine, model, tensor, count))
                cpu_us = (cpu_seconds() - cpu_before) / count * 1e6
                rows.append(
                    {
                        "tensor": size,
                        "bytes": int(tensor.nbytes),
                        "isolation": isolation,
                        "p50_us": round(statistics.median(samples), 1),
                        "p99_us": round(samples[int(len(samples) * 0.99) - 1], 1),
                        "mean_us": round(statistics.fmean(samples), 1),
                        "cpu_us_per_request": round(cpu_us, 1),
                        "req_per_s_8_in_flight": round(await throughput(engine, model, tensor, count), 1),
                    }
                )
    finally:
        await engine.shutdown(5)
    return {"load_average": os.getloadavg(), "cpus": os.cpu_count(), "rows": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--image-requests", type=int, default=300)
    args = parser.parse_args()
    result = asyncio.run(main(args.requests, args.image_requests))
    print(f"load average {result['load_average']}")
    columns = ("p50 us", "p99 us", "mean us", "CPU us", "req/s @8")
    print(f"{'tensor':8} {'isolation':10} " + " ".join(f"{c:>9}" for c in columns))
    for row in result["rows"]:  # type: ignore[attr-defined]
        print(
            f"{row['tensor']:8} {row['isolation']:10} {row['p50_us']:9.1f} {row['p99_us']:9.1f} "
            f"{row['mean_us']:9.1f} {row['cpu_us_per_request']:9.1f} {row['req_per_s_8_in_flight']:9.1f}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "isolation_cost.json").write_text(json.dumps(result, indent=2) + "\n")
