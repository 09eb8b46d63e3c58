"""The suite's outputs for people: a rich table and PNG plots per model."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.suite.results import SuiteResults

PROTOCOL_COLOURS = {"http": "tab:blue", "grpc": "tab:orange"}


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def raw_table(results: SuiteResults) -> Table:
    table = Table(title="Raw limit (backend in-process, no server)")
    for column in ("Model", "Backend", "Instances", "Best batch", "Rows/s", "ms / execute"):
        table.add_column(column, justify="right" if column not in ("Model", "Backend") else "left")
    for model, limit in sorted(results.raw.items()):
        best = limit.best
        table.add_row(
            model,
            limit.backend,
            str(limit.instances),
            str(best.batch_size),
            _fmt(best.rows_per_s),
            _fmt(best.mean_execute_ms, 2),
        )
    for model, reason in sorted(results.raw_skipped.items()):
        table.add_row(model, "-", "-", "-", "-", f"[yellow]{reason}[/yellow]")
    return table


def served_table(results: SuiteResults) -> Table:
    table = Table(title="Served through packserve (perf_analyzer) vs raw limit")
    columns = (
        "Model",
        "Protocol",
        "Conc.",
        "Rows/s",
        "Served/raw",
        "p50 ms",
        "p99 ms",
        "Srv batch",
        "Srv queue us",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("Model", "Protocol") else "right")
    for point in sorted(results.served, key=lambda p: (p.model, p.protocol, p.concurrency)):
        ratio = results.ratio(point)
        server = point.server
        table.add_row(
            point.model,
            point.protocol,
            str(point.concurrency),
            _fmt(point.rows_per_s) + ("*" if point.mode != "stable" else ""),
            "-" if ratio is None else f"{ratio:.1%}",
            _fmt(point.p50_us / 1000.0, 2),
            _fmt(point.p99_us / 1000.0, 2),
            _fmt(server.avg_batch_size, 2) if server else "n/a",
            _fmt(server.queue_us, 0) if server else "n/a",
        )
    table.caption = (
        "* windows never settled: a fixed request count was measured instead"
        if any(point.mode != "stable" for point in results.served)
        else None
    )
    return table


def print_report(results: SuiteResults, console: Console) -> None:
    console.print(raw_table(results))
    console.print(served_table(results))
    for failure in results.failed:
        console.print(
            f"[red]no figures[/red] for {failure.model} over {failure.protocol} at concurrency "
            f"{failure.concurrency}: {failure.reason}"
        )
    if results.served and all(point.server is None for point in results.served):
        console.print("[yellow]perf_analyzer printed no server-side statistics[/yellow]")


def plot_results(results: SuiteResults, out_dir: Path) -> list[Path]:
    """Per model: throughput vs concurrency (raw limit as a line) and p50/p99 vs concurrency."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server
    import matplotlib.pyplot as plt

    written: list[Path] = []
    models = sorted({point.model for point in results.served} | set(results.raw))
    for model in models:
        protocols = [p for p in ("http", "grpc") if results.served_for(model, p)]
        figure, axis = plt.subplots(figsize=(7, 4.5))
        for protocol in protocols:
            points = results.served_for(model, protocol)
            axis.plot(
                [p.concurrency for p in points],
                [p.rows_per_s for p in points],
                marker="o",
                label=f"served over {protocol}",
                color=PROTOCOL_COLOURS.get(protocol),
            )
        limit = results.raw.get(model)
        if limit is not None:
            best = limit.best
            axis.axhline(
                best.rows_per_s,
                color="tab:green",
                linestyle="--",
                label=f"raw limit (batch {best.batch_size})",
            )
        concurrency = sorted({p.concurrency for p in results.served if p.model == model})
        _finish(axis, model, "throughput (rows/s)", concurrency)
        axis.set_ylim(bottom=0)
        written.append(_save(figure, out_dir / f"throughput_{model}.png"))
        plt.close(figure)

        if not protocols:
            continue
        figure, axis = plt.subplots(figsize=(7, 4.5))
        for protocol in protocols:
            points = results.served_for(model, protocol)
            colour = PROTOCOL_COLOURS.get(protocol)
            axis.plot(
                [p.concurrency for p in points],
                [p.p50_us / 1000 for p in points],
                marker="o",
                color=colour,
                label=f"{protocol} p50",
            )
            axis.plot(
                [p.concurrency for p in points],
                [p.p99_us / 1000 for p in points],
                marker="s",
                linestyle=":",
                color=colour,
                label=f"{protocol} p99",
            )
        _finish(axis, model, "latency (ms)", concurrency)
        written.append(_save(figure, out_dir / f"latency_{model}.png"))
        plt.close(figure)
    return written


def _finish(axis: object, model: str, ylabel: str, concurrency: list[int]) -> None:
    from matplotlib.axes import Axes

    assert isinstance(axis, Axes)
    axis.set_title(model)
    axis.set_xlabel("concurrency (requests in flight)")
    axis.set_ylabel(ylabel)
    if concurrency:
        # Concurrencies usually double: a log axis spaces them evenly; label the measured ones.
        axis.set_xscale("log", base=2)
        axis.set_xticks(concurrency, labels=[str(c) for c in concurrency])
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()


def _save(figure: object, path: Path) -> Path:
    from matplotlib.figure import Figure

    assert isinstance(figure, Figure)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
