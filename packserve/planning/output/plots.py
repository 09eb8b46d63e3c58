"""PNG plots for profiles and plans (matplotlib, headless Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np

from packserve.planning.capacity.simulator import SimResult
from packserve.planning.formats.plan_schema import Plan, gpus
from packserve.planning.formats.profile_schema import Profile


def profile_plots(profile: Profile, out_dir: Path) -> list[Path]:
    """Per model: latency and throughput against batch size, one line per instance count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for model in profile.models:
        if not model.points:
            continue
        fig, (latency_ax, throughput_ax) = plt.subplots(1, 2, figsize=(10, 4))
        for instances in sorted({p.instances for p in model.points}):
            points = sorted((p for p in model.points if p.instances == instances), key=lambda p: p.batch_size)
            sizes = [p.batch_size for p in points]
            latency_ax.plot(
                sizes, [p.latency_p50_ms for p in points], marker="o", label=f"p50, {instances} inst."
            )
            latency_ax.plot(
                sizes, [p.latency_p99_ms for p in points], linestyle="--", label=f"p99, {instances} inst."
            )
            throughput_ax.plot(
                sizes, [p.throughput_per_s for p in points], marker="o", label=f"{instances} inst."
            )
        latency_ax.set(xlabel="batch size", ylabel="latency (ms)", title=f"{model.name}: latency")
        throughput_ax.set(xlabel="batch size", ylabel="images / s", title=f"{model.name}: throughput")
        for axis in (latency_ax, throughput_ax):
            axis.set_xscale("log", base=2)
            axis.grid(True, alpha=0.3)
            axis.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"profile_{model.name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def plan_plots(plan: Plan, simulations: list[tuple[str, SimResult]], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        _fleet(plan, out_dir / "gpus_before_after.png"),
        _utilisation(plan, simulations, out_dir / "utilisation.png"),
    ]
    if simulations:
        written.append(_latency_cdf(plan, simulations, out_dir / "latency_cdf.png"))
    return written


def _fleet(plan: Plan, path: Path) -> Path:
    fig, axis = plt.subplots(figsize=(5, 4))
    before = gpus(plan.baseline)
    after = gpus(plan.pods)
    bars = axis.bar(["one model per device", "packed plan"], [before, after], color=["#999999", "#2a7ab0"])
    axis.bar_label(bars)
    axis.set(ylabel="devices at peak", title="Devices before and after")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _utilisation(plan: Plan, simulations: list[tuple[str, SimResult]], path: Path) -> Path:
    fig, axis = plt.subplots(figsize=(7, 4))
    names = [p.name for p in plan.pods]
    x = np.arange(len(names))
    width = 0.8 / (1 + len(simulations))
    axis.bar(x, [p.utilisation for p in plan.pods], width, label="planned")
    for offset, (label, result) in enumerate(simulations, start=1):
        axis.bar(
            x + offset * width,
            [result.utilisation.get(n, 0.0) for n in names],
            width,
            label=f"simulated, {label}",
        )
    axis.set_xticks(x + width * len(simulations) / 2, names, rotation=20)
    axis.set(ylabel="busy fraction per device at peak", ylim=(0, 1.05), title="Device utilisation")
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _latency_cdf(plan: Plan, simulations: list[tuple[str, SimResult]], path: Path) -> Path:
    fig, axis = plt.subplots(figsize=(7, 4))
    for label, result in simulations:
        values = np.sort(result.all_latencies_ms())
        if len(values):
            axis.plot(values, np.arange(1, len(values) + 1) / len(values), label=label)
    axis.axvline(plan.p99_ms, color="red", linestyle="--", label=f"p99 target {plan.p99_ms:g} ms")
    axis.axhline(0.99, color="grey", linestyle=":")
    axis.set(
        xlabel="end-to-end latency (ms)", ylabel="fraction of requests", title="Simulated latency CDF at peak"
    )
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
