"""Per-model GPU memory: what each net needs, and `gpu_memory_budget` enforced through the engine.

1. Memory per model: each net loaded on the device alone, its weights and the peak working memory
   of one run at its largest batch, measured by the same function the pytorch backend's budget
   check uses (packserve.backends.gpu_budget.measure_need).
2. Budgets: one repository served by the in-process engine with four budgeted nets: two that fit
   (1.5x their need), one whose budget is more than the device has left after those two (refused:
   it would eat into their reservations) and one with a budget under its weights (refused). The
   two that loaded are then driven at their largest batch at the same time: every request must
   succeed, and on a GPU the process's peak allocated memory must stay within their two budgets.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from bench.gpu_check import repository as repo
from bench.gpu_check.common import Settings
from bench.gpu_check.nets import NETS
from packserve.backends.gpu_budget import LEDGER, device_memory_bytes, format_bytes, measure_need
from packserve.core.engine import Engine, EngineOptions
from packserve.errors import PackserveError
from packserve.messages import InferRequest

FIT, FIT_TOO, GREEDY, TINY = "resnet18", "efficientnet_b0", "vgg_small", "squeezenet"


def need_per_model(settings: Settings) -> dict[str, dict[str, int | None]]:
    import torch

    shape = settings.shape
    needs = {}
    for net in NETS:
        module = torch.jit.load(str(settings.nets_dir / f"{net}.pt"), map_location=settings.device).eval()
        zeros = torch.zeros(shape.max_batch, 3, shape.size, shape.size, device=settings.device)
        need = measure_need(module, settings.device, lambda m=module, z=zeros: m(z))
        needs[net] = {
            "weights_bytes": need.weights_bytes,
            "working_bytes": need.working_bytes,
            "total_bytes": need.total,
        }
        del module, zeros
        if settings.cuda:
            torch.cuda.empty_cache()
    return needs


def _write_budgeted(root: Path, settings: Settings, budgets: dict[str, str]) -> Path:
    repository = root / "budgets"
    kind = "KIND_GPU" if settings.cuda else "KIND_CPU"
    gpus = f" gpus: [ {settings.device.split(':')[1]} ]" if settings.cuda else ""
    for net, budget in budgets.items():
        (repository / net / "1").mkdir(parents=True, exist_ok=True)
        (repository / net / "config.pbtxt").write_text(
            repo.net_config(net, settings.shape, kind, gpus, budget)
        )
        shutil.copy(settings.nets_dir / f"{net}.pt", repository / net / "1" / "model.pt")
    return repository


async def _serve_two(repository: Path, settings: Settings, requests_each: int) -> dict[str, Any]:
    # The two that fit load first; then the two that must be refused, one at a time, in order.
    engine = await Engine.start(EngineOptions(repository, "explicit", load_models=(FIT, FIT_TOO)))
    try:
        for name in (GREEDY, TINY):
            with contextlib.suppress(PackserveError):
                await engine.load_model(name)
        states = {e.name: (e.state, e.reason) for e in engine.repository_index()}
        reserved = LEDGER.reserved(settings.device)
        if settings.cuda:
            import torch

            torch.cuda.synchronize(settings.device)
            torch.cuda.reset_peak_memory_stats(settings.device)
        batch = np.zeros((settings.shape.max_batch, 3, settings.shape.size, settings.shape.size), np.float32)
        served = {FIT: 0, FIT_TOO: 0}

        async def client(name: str) -> None:
            for _ in range(requests_each):
                await engine.infer(InferRequest(model_name=name, inputs={"INPUT__0": batch}))
                served[name] += 1

        if states[FIT][0] == "READY" and states[FIT_TOO][0] == "READY":
            await asyncio.gather(*(client(name) for name in (FIT, FIT_TOO) for _ in range(2)))
        peak = None
        if settings.cuda:
            import torch

            peak = int(torch.cuda.max_memory_allocated(settings.device))
        return {"states": states, "served": served, "peak_bytes": peak, "reserved": reserved}
    finally:
        await engine.shutdown(drain_timeout_s=5.0)


def run(settings: Settings) -> dict[str, Any]:
    needs = need_per_model(settings)
    total = device_memory_bytes(settings.device)
    fit = {name: int(needs[name]["total_bytes"] * 1.5) + 1 for name in (FIT, FIT_TOO)}  # type: ignore[operator]
    budgets = {
        FIT: str(fit[FIT]),
        FIT_TOO: str(fit[FIT_TOO]),
        GREEDY: str(total - sum(fit.values()) + 2**20),  # 1 MiB more than is left
        TINY: "1KiB",
    }
    repository = _write_budgeted(settings.work, settings, budgets)
    outcome = asyncio.run(_serve_two(repository, settings, 5 if settings.quick else 50))
    states = outcome["states"]
    requests_each = 2 * (5 if settings.quick else 50)
    peak = outcome["peak_bytes"]
    checks = [
        {
            "check": "two budgeted models load and serve at their largest batch together",
            "ok": states[FIT][0] == states[FIT_TOO][0] == "READY"
            and all(v == requests_each for v in outcome["served"].values()),
            "figures": {"served": outcome["served"], "budgets": {n: format_bytes(fit[n]) for n in fit}},
        },
        {
            "check": "a budget eating into their reservations is refused with the reason",
            "ok": states[GREEDY][0] != "READY" and "does not fit" in states[GREEDY][1],
            "figures": {"reason": states[GREEDY][1]},
        },
        {
            "check": "a model over its budget is refused with the reason",
            "ok": states[TINY][0] != "READY" and "over its gpu_memory_budget" in states[TINY][1],
            "figures": {"reason": states[TINY][1]},
        },
        {
            "check": "peak device memory of the two stays within their budgets",
            "ok": peak <= sum(fit.values()) if peak is not None else None,
            "figures": {
                "peak": format_bytes(peak) if peak is not None else None,
                "budgets_sum": format_bytes(sum(fit.values())),
            },
        },
    ]
    return {
        "device_total_bytes": total,
        "need_per_model": needs,
        "budgets": budgets,
        "outcome": outcome,
        "checks": checks,
    }
