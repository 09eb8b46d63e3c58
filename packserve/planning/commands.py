"""What each planning command does, from an options object to files on disk.

The CLI parses arguments into these options and makes one call here; everything raises
`packserve.errors` types whose message the CLI shows as is.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from packserve.errors import InvalidArgumentError
from packserve.planning.capacity.fleet_search import SimulationProgress, p99_for_devices, search
from packserve.planning.capacity.plan_check import ScenarioSummary, check_plan, plan_pipelines
from packserve.planning.capacity.planner import PlanOptions
from packserve.planning.formats.config_patch import apply_to_repository, load_patches
from packserve.planning.formats.plan_schema import Plan, gpus
from packserve.planning.formats.profile_schema import Profile
from packserve.planning.output.k8s import DeployOptions, build_manifests, is_core, keda_manifests
from packserve.planning.output.k8s_scaling import adapter_values
from packserve.planning.profiling.profiler import ProfileOptions, ProgressCallback, run_profile


@dataclass(frozen=True, slots=True)
class ProfileCommand:
    options: ProfileOptions
    out: Path
    plots_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class PlanCommand:
    profile: Path
    options: PlanOptions
    out_dir: Path
    simulate: bool = True
    simulation_seconds: float | None = None  # None = sized for a stable p99


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    plan: Plan
    scenarios: list[ScenarioSummary]
    files: list[Path] = field(default_factory=list)


def profile_command(command: ProfileCommand, on_point: ProgressCallback | None = None) -> Profile:
    profile = asyncio.run(run_profile(command.options, on_point))
    command.out.parent.mkdir(parents=True, exist_ok=True)
    profile.save(command.out)
    if command.plots_dir is not None:
        from packserve.planning.output.plots import profile_plots  # matplotlib only when asked for

        profile_plots(profile, command.plots_dir)
    return profile


def plan_command(command: PlanCommand, on_progress: SimulationProgress | None = None) -> PlanOutcome:
    """Plan the packed fleet and the one-model-per-pod baseline with the same search (plan, then
    simulate at peak, stepping utilisation down until Poisson arrivals meet the target), then
    stress the packed plan with bursty (MMPP) arrivals."""
    from packserve.planning.output.plots import plan_plots
    from packserve.planning.output.report import markdown_report

    profile = Profile.load(command.profile)
    options = command.options
    packed = search(profile, options, "packed", command.simulate, command.simulation_seconds, on_progress)
    baseline = search(
        profile, options, "per_model", command.simulate, command.simulation_seconds, on_progress
    )
    checked = list(packed.checked)
    if command.simulate:
        checked += check_plan(
            packed.plan,
            profile,
            plan_pipelines(packed.plan, profile),
            duration_s=command.simulation_seconds,
            kinds=("mmpp",),
            on_progress=lambda kind, f: (
                on_progress(f"stress-testing the packed plan ({kind})", f) if on_progress else None
            ),
        )
    within = packed.plan.within_bound_devices()
    needed = (
        p99_for_devices(profile, options, within)  # at the search's highest utilisation
        if gpus(packed.plan.pods) > within
        else None
    )
    result = replace(
        packed.plan,
        p99_within_bound_ms=needed,
        baseline=baseline.plan.pods,
        baseline_max_utilisation=baseline.plan.max_utilisation,
        simulated_p99_ms=(
            {"packed": packed.worst_p99_ms, "baseline": baseline.worst_p99_ms} if command.simulate else {}
        ),
    )
    out = command.out_dir
    out.mkdir(parents=True, exist_ok=True)
    scenarios = [s for s, _ in checked]
    plot_files = plan_plots(result, [(s.arrivals, r) for s, r in checked], out)
    result.save(out / "plan.json")
    (out / "config_patch.pbtxt").write_text(_pbtxt_patch(result), encoding="utf-8")
    report = markdown_report(
        result, scenarios, [p.name for p in plot_files], packed.attempts, baseline.attempts
    )
    (out / "report.md").write_text(report, encoding="utf-8")
    files = [out / "plan.json", out / "config_patch.pbtxt", out / "report.md"]
    return PlanOutcome(result, scenarios, files + plot_files)


def _pbtxt_patch(result: Plan) -> str:
    parts = []
    for pod in result.pods:
        for model in (m for m in pod.models if m.tunable):
            parts.append(f"# {model.name} (pod {pod.name})\n{model.config_pbtxt(result.device_kind)}")
    return "\n".join(parts)


def deploy_k8s_command(plan_path: Path, options: DeployOptions, out_dir: Path) -> list[Path]:
    plan = Plan.load(plan_path)
    manifests = build_manifests(plan, options)
    out_dir.mkdir(parents=True, exist_ok=True)
    core = [m for m in manifests if is_core(m)]
    custom = [m for m in manifests if not is_core(m)]
    written = [out_dir / "packserve.yaml"]
    written[0].write_text(yaml.safe_dump_all(core, sort_keys=False), encoding="utf-8")
    if custom:
        # CRD-based resources apart: they apply only where their operators are installed.
        written.append(out_dir / "custom-resources.yaml")
        written[-1].write_text(yaml.safe_dump_all(custom, sort_keys=False), encoding="utf-8")
    # The HPAs' metric exists only once prometheus-adapter has this rule (docs/planning.md).
    written.append(out_dir / "prometheus-adapter-values.yaml")
    written[-1].write_text(yaml.safe_dump(adapter_values(), sort_keys=False), encoding="utf-8")
    keda = keda_manifests(plan, options)
    if keda:
        written.append(out_dir / "keda-scaledobjects.yaml")
        written[-1].write_text(yaml.safe_dump_all(keda, sort_keys=False), encoding="utf-8")
    return written


def apply_patch_command(repository: Path, patch_file: Path) -> list[Path]:
    if not repository.is_dir():
        raise InvalidArgumentError(f"model repository '{repository}' is not a folder")
    return apply_to_repository(repository, load_patches(patch_file))
