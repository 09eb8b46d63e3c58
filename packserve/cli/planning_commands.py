"""`packserve profile`, `packserve plan`, `packserve deploy k8s`: parse -> options -> one call.

The planning package (OR-Tools, SimPy, matplotlib) is imported inside each command, so
`packserve serve` and `--help` never pay for it. Every packserve error becomes a usage error
(exit code 2) whose message says what cannot be met and why.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from packserve.errors import InvalidArgumentError, PackserveError


def register(app: typer.Typer) -> None:
    from packserve.cli.extras import needs_extra

    app.command("profile")(needs_extra("planning", "profile")(profile))
    app.command("plan")(needs_extra("planning", "plan")(plan))
    deploy = typer.Typer(help="Write deployment manifests for a plan.", no_args_is_help=True)
    deploy.command("k8s")(needs_extra("planning", "deploy k8s")(deploy_k8s))
    deploy.command("apply-patch", hidden=True)(needs_extra("planning", "deploy apply-patch")(apply_patch))
    app.add_typer(deploy, name="deploy")


def _bad(exc: PackserveError, param: str | None = None) -> typer.Exit:
    """Say what is wrong in one line on stderr and exit 2 (a usage error), no traceback, no box."""
    message = " ".join(str(exc).split())
    typer.echo(f"packserve: error: {param + ': ' if param else ''}{message}", err=True)
    return typer.Exit(2)


def _check_out_folder(path: Path, param: str = "--out") -> None:
    if path.exists() and not path.is_dir():
        raise _bad(InvalidArgumentError(f"'{path}' exists and is not a folder"), param)


def _finite_at_least(value: float, least: float, param: str) -> float:
    if not math.isfinite(value) or value < least:
        raise _bad(InvalidArgumentError(f"must be a finite number of at least {least:g}, got {value}"), param)
    return value


def profile(
    model_repository: Annotated[Path, typer.Option(help="Triton-style model repository to profile.")],
    out: Annotated[Path, typer.Option(help="Where to write the profile JSON.")] = Path("profile.json"),
    models: Annotated[str, typer.Option(help="Comma-separated models; all when empty.")] = "",
    device: Annotated[str, typer.Option(help="cpu or cuda:N")] = "cpu",
    batch_sizes: Annotated[str, typer.Option(help="Request batch sizes, e.g. 1,2,4,8.")] = "1,2,4,8",
    instances: Annotated[str, typer.Option(help="Instance counts, e.g. 1,2.")] = "1,2",
    requests: Annotated[int, typer.Option(help="Requests measured per point.")] = 100,
    plots: Annotated[Path | None, typer.Option(help="Folder for latency/throughput PNG plots.")] = None,
    sample_image: Annotated[
        Path | None, typer.Option(help="Image file sent for image (BYTES) inputs; a synthetic JPEG if unset.")
    ] = None,
) -> None:
    """Measure latency, throughput and memory per model through the real serving path."""
    from rich.progress import Progress

    from packserve.planning.commands import ProfileCommand, profile_command
    from packserve.planning.formats.units import parse_int_list
    from packserve.planning.profiling.profiler import ProfileOptions

    if device != "cpu":
        from packserve.planning.profiling.device_memory import open_device_memory

        try:
            open_device_memory(device)  # refuses a GPU this process cannot see, before any work
        except PackserveError as exc:
            raise _bad(exc, "--device") from None
    if out.is_dir():
        raise _bad(InvalidArgumentError(f"'{out}' is a folder; name the profile JSON file to write"), "--out")
    if plots is not None:
        _check_out_folder(plots, "--plots")
    try:
        options = ProfileOptions(
            model_repository=model_repository,
            models=tuple(m.strip() for m in models.split(",") if m.strip()),
            device=device,
            batch_sizes=parse_int_list(batch_sizes, "--batch-sizes"),
            instances=parse_int_list(instances, "--instances"),
            requests_per_point=requests,
            sample_image=sample_image,
        )
        with Progress(transient=True, disable=not sys.stderr.isatty()) as progress:
            task = progress.add_task("profiling", total=None)

            def advance(label: str) -> None:
                progress.update(task, advance=1, description=label)

            result = profile_command(ProfileCommand(options, out, plots), advance)
    except PackserveError as exc:
        raise _bad(exc) from None
    typer.echo(f"profiled {len(result.models)} models on {result.device_name} -> {out}")


def plan(
    profile: Annotated[Path, typer.Option(help="Profile JSON written by `packserve profile`.")],
    load: Annotated[str, typer.Option(help="Average load: 25M/day, 300/s, 2k/min.")],
    p99: Annotated[str, typer.Option(help="End-to-end p99 target: 100ms, 0.2s.")],
    gpu_memory: Annotated[
        str,
        typer.Option(
            "--gpu-memory",
            "--memory",
            help="Memory of one device: 16GiB, 40GB (GPU memory, or a CPU pod's RAM).",
        ),
    ],
    peak_factor: Annotated[float, typer.Option(help="Peak load as a multiple of the average.")] = 3.0,
    mix: Annotated[list[str] | None, typer.Option(help="PIPELINE=SHARE, repeatable.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for plan.json, report and plots.")] = Path("plan"),
    simulate: Annotated[bool, typer.Option(help="Check the plan by simulation.")] = True,
    simulation_seconds: Annotated[float | None, typer.Option(help="Simulated seconds per scenario.")] = None,
    max_utilisation: Annotated[
        float,
        typer.Option(
            help="Device utilisation the search starts from; it steps down until the simulation passes."
        ),
    ] = 0.95,
    host_cores: Annotated[
        float,
        typer.Option(help="GPU plans: host CPU cores per GPU pod (default: the profiling machine's)."),
    ] = 0.0,
) -> None:
    """Plan pods, replicas and per-model settings for a load and latency target."""
    from packserve.planning.capacity.planner import PlanOptions
    from packserve.planning.commands import PlanCommand, plan_command
    from packserve.planning.formats.units import parse_duration_ms, parse_load, parse_memory_bytes, parse_mix

    _finite_at_least(peak_factor, 1.0, "--peak-factor")
    if not (math.isfinite(max_utilisation) and 0.3 <= max_utilisation <= 1.0):
        raise _bad(
            InvalidArgumentError(f"must be between 0.3 and 1, got {max_utilisation}"), "--max-utilisation"
        )
    if simulation_seconds is not None:
        _finite_at_least(simulation_seconds, 1.0, "--simulation-seconds")
    _check_out_folder(out)
    if profile.is_dir():
        raise _bad(InvalidArgumentError(f"'{profile}' is a folder, not a profile JSON file"), "--profile")
    options = PlanOptions(
        requests_per_s=_parsed(parse_load, load, "--load"),
        p99_ms=_parsed(parse_duration_ms, p99, "--p99"),
        memory_bytes=_parsed(parse_memory_bytes, gpu_memory, "--gpu-memory"),
        peak_factor=peak_factor,
        mix=_parsed(parse_mix, mix, "--mix") if mix else None,
        max_utilisation=max_utilisation,
        host_cores=_finite_at_least(host_cores, 0.0, "--host-cores"),
    )
    try:
        with _simulation_progress() as on_progress:
            outcome = plan_command(
                PlanCommand(profile, options, out, simulate, simulation_seconds), on_progress
            )
    except PackserveError as exc:
        raise _bad(exc) from None
    typer.echo(_summary(outcome.plan) + f" -> {out / 'report.md'}")
    for scenario in outcome.scenarios:
        worst = max(scenario.p99_ms.values())
        verdict = "meets" if scenario.meets_slo else "MISSES"
        typer.echo(f"simulated {scenario.arrivals}: worst pipeline p99 {worst:.1f} ms, {verdict} the target")


def _summary(result: Any) -> str:
    """'devices at peak: lower bound L, packed P (x1.20), one model per pod B (x2.00)'."""
    rows = result.comparison()
    parts = [f"lower bound {rows['lower_bound']['devices']:.0f}"]
    for key, label in (("packed", "packed"), ("baseline", "one model per pod")):
        if key in rows:
            parts.append(f"{label} {rows[key]['devices']:.0f} (x{rows[key]['ratio_to_bound']:.2f} the bound)")
    return "devices at peak: " + ", ".join(parts)


@contextmanager
def _simulation_progress() -> Iterator[Callable[[str, float], None] | None]:
    """A rich progress bar with ETA for each simulation on a terminal; nothing off one."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not (console.is_terminal and sys.stderr.isatty()):
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def update(label: str, fraction: float) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=1.0)
            progress.update(tasks[label], completed=fraction)

        yield update


def _parsed(parser: Any, value: Any, param: str) -> Any:
    try:
        return parser(value)
    except PackserveError as exc:
        raise _bad(exc, param) from None


def deploy_k8s(
    plan_file: Annotated[Path, typer.Option("--plan", help="plan.json written by `packserve plan`.")],
    image: Annotated[str, typer.Option(help="packserve container image.")],
    out: Annotated[Path, typer.Option(help="Folder for the YAML manifests.")] = Path("k8s"),
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace.")] = "default",
    repository_volume: Annotated[str | None, typer.Option(help="PVC holding the model repository.")] = None,
    repository_image: Annotated[
        str | None, typer.Option(help="Image with the repository at /models.")
    ] = None,
    min_replicas: Annotated[
        int | None, typer.Option(help="HPA minimum; default: the pods the plan's average load needs.")
    ] = None,
    max_replicas: Annotated[
        int | None, typer.Option(help="HPA maximum; default: the pods the plan's peak needs.")
    ] = None,
    kserve: Annotated[
        bool, typer.Option(help="Also write a KServe ClusterServingRuntime + InferenceService.")
    ] = False,
    keda_prometheus: Annotated[
        str | None,
        typer.Option(help="Prometheus URL: also write KEDA ScaledObjects (instead of the HPAs)."),
    ] = None,
    console: Annotated[bool, typer.Option(help="Serve the web console (/console) in the pods.")] = False,
) -> None:
    """Write Kubernetes manifests (Deployment, Service, HPA, PDB, ServiceMonitor) for a plan, and the
    prometheus-adapter rule that gives the HPA its metric."""
    from packserve.planning.commands import deploy_k8s_command
    from packserve.planning.output.k8s import DeployOptions
    from packserve.planning.output.k8s_inputs import ReplicaBounds

    options = DeployOptions(
        image=image,
        namespace=namespace,
        repository_volume=repository_volume,
        repository_image=repository_image,
        replicas=ReplicaBounds(min_replicas, max_replicas),
        kserve=kserve,
        keda_prometheus_url=keda_prometheus,
        console=console,
    )
    try:
        written = deploy_k8s_command(plan_file, options, out)
    except PackserveError as exc:
        # One line an operator (or a script) can read; exit 2 as for any usage error.
        typer.echo(f"packserve deploy k8s: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo("wrote " + ", ".join(str(p) for p in written))


def apply_patch(
    repository: Annotated[Path, typer.Option(help="Model repository to rewrite in place.")],
    patch: Annotated[Path, typer.Option(help="JSON: model -> config fields.")],
) -> None:
    """Merge planned config fields into each model's config.pbtxt (run by the pods' init container)."""
    from packserve.planning.commands import apply_patch_command

    try:
        written = apply_patch_command(repository, patch)
    except PackserveError as exc:
        raise _bad(exc) from None
    typer.echo(f"patched {len(written)} model configs")
