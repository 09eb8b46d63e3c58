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
from packserve.planning.config_patch import apply_to_repository, load_patches
from packserve.planning.k8s import DeployOptions, build_manifests, is_core, keda_manifests
from packserve.planning.k8s_scaling import adapter_values
from packserve.planning.plan_check import ScenarioSummary, check_plan, plan_pipelines
from packserve.planning.plan_schema import Plan
from packserve.planning.planner import PlanOptions, plan
from packserve.planning.profile_schema import Profile
from packserve.planning.profiler import ProfileOptions, ProgressCallback, run_profile

# When the simulation misses the target, re-plan with this much less utilisation, down to the floor.
_UTILISATION_STEP = 0.1
_LOWEST_UTILISATION = 0.3


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
        from packserve.planning.plots import profile_plots  # matplotlib only when asked for

        profile_plots(profile, command.plots_dir)
    return profile


def plan_command(command: PlanCommand) -> PlanOutcome:
    """Plan, then check by simulation at peak; while Poisson arrivals miss the target, plan again
    with less device utilisation allowed (more headroom, more pods)."""
    from packserve.planning.plots import plan_plots
    from packserve.planning.report import markdown_report

    profile = Profile.load(command.profile)
    options = command.options
    while True:
        result = plan(profile, options)
        checked = (
            check_plan(
                result, profile, plan_pipelines(result, profile), duration_s=command.simulation_seconds
            )
            if command.simulate
            else []
        )
        poisson_ok = all(s.meets_slo for s, _ in checked if s.arrivals == "poisson")
        if poisson_ok or options.max_utilisation <= _LOWEST_UTILISATION:
            break
        options = replace(options, max_utilisation=round(options.max_utilisation - _UTILISATION_STEP, 2))
    out = command.out_dir
    out.mkdir(parents=True, exist_ok=True)
    scenarios = [s for s, _ in checked]
    plot_files = plan_plots(result, [(s.arrivals, r) for s, r in checked], out)
    result.save(out / "plan.json")
    (out / "config_patch.pbtxt").write_text(_pbtxt_patch(result), encoding="utf-8")
    report = markdown_report(result, scenarios, [p.name for p in plot_files])
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
