"""report.json -> report.md: the same tables for the GPU run and the CPU dry run."""

from __future__ import annotations

import json
from typing import Any


def _mib(value: Any) -> str:
    return f"{value / 2**20:.1f}" if isinstance(value, int | float) else "-"


def _num(value: Any, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _verdict(ok: bool | None) -> str:
    return {True: "pass", False: "**FAIL**", None: "n/a (dry run)"}[ok]


def render(report: dict[str, Any]) -> str:
    env = report["environment"]
    sections = report["sections"]
    quick = ", quick" if env["quick"] else ""
    load = " ".join(env["load_average"])
    lines = [
        f"# GPU check: {env['gpu_name'] or 'CPU dry run'} ({env['device']}{quick})",
        "",
        f"{env['started']}; {env['cpu_cores']} CPU cores, load average {load} at start; "
        f"Python {env['python']}, torch {env['torch']}, numpy {env['numpy']}; "
        f"perf_analyzer: {env['perf_analyzer']}; {report['seconds']} s in all.",
        "",
        "## Checks",
        "",
    ]
    rows = []
    for name, section in sections.items():
        if "error" in section:
            rows.append(
                [
                    name,
                    "section raised",
                    "**ERROR**",
                    section["error"].replace("|", "/").splitlines()[0][:200],
                ]
            )
        if "skipped" in section:
            rows.append([name, "section skipped", "-", section["skipped"]])
        for check in section.get("checks", []):
            figures = json.dumps(check["figures"], default=str).replace("|", "/")
            rows.append([name, check["check"], _verdict(check["ok"]), figures])
    lines += _table(["section", "check", "result", "figures"], rows)
    lines += _preprocessing(sections.get("preprocessing", {}))
    lines += _packing(sections.get("packing", {}))
    lines += _copies(sections.get("zero_copies", {}))
    lines += _planning(sections.get("profile_and_plan", {}))
    lines += _budgets(sections.get("memory_budgets", {}))
    return "\n".join(lines)


def _preprocessing(section: dict[str, Any]) -> list[str]:
    if "rows" not in section:
        return []
    lines = [
        f"## Preprocessing (decode + letterbox + normalize; GPU path {section['gpu_instances']} instances, "
        f"CPU path on {section['cpu_cores']} cores)",
        "",
    ]
    rows = [
        [r["image"], r["letterbox"], r["batch"], r["gpu_images_per_s"], r["cpu_images_per_s"], r["ratio"]]
        for r in section["rows"]
    ]
    lines += _table(
        ["image", "letterbox", "batch", "GPU path images/s", "CPU path images/s", "GPU/CPU"], rows
    )
    eq = [
        [size, f["mean_levels"], f["p99_levels"], f["max_levels"]] for size, f in section["equality"].items()
    ]
    tolerance = section["tolerance"]
    lines.append(
        f"GPU vs CPU outputs, pixel levels (tolerance: mean <= {tolerance['mean_levels']}, "
        f"p99 <= {tolerance['p99_levels']}):"
    )
    lines.append("")
    return lines + _table(["image", "mean", "p99", "max"], eq)


def _packing(section: dict[str, Any]) -> list[str]:
    if "layouts" not in section:
        return []
    lines = [f"## Packing (7 nets, concurrency {section['concurrency']} per model)", ""]
    rows = []
    for name, layout in section["layouts"].items():
        memory = layout["gpu_memory_bytes"]
        shown = (
            ", ".join(f"{n} {_mib(v)}" for n, v in memory.items())
            if isinstance(memory, dict)
            else _mib(memory)
        )
        rows.append(
            [
                name,
                _num(layout["images_per_s"]),
                _num(layout["p50_ms"], 2),
                _num(layout["p99_ms"], 2),
                _num(layout["gpu_busy_percent"]),
                shown,
            ]
        )
    lines += _table(
        ["layout", "images/s (all 7 models)", "p50 ms", "p99 ms", "GPU busy %", "GPU MiB per process"], rows
    )
    lines.append(
        f"Packed / per-process throughput: {section['speedup']}x. /metrics mid-run: {section['metrics']}"
    )
    return [*lines, ""]


def _copies(section: dict[str, Any]) -> list[str]:
    if "requests" not in section:
        return []
    return [
        "## Zero copies",
        "",
        f"{section['requests']} requests through `pack`, profiled "
        f"({', '.join(section['profiled_activities'])}): {section['device_to_host_per_request']} "
        f"device-to-host copies per request for {section['final_outputs_per_request']} final outputs; "
        f"{section['host_to_device_per_request']} host-to-device.",
        "",
    ]


def _planning(section: dict[str, Any]) -> list[str]:
    if "models" not in section:
        return []
    lines = [f"## Profile ({section['profile_device_name']}) and plan", ""]
    rows = [[n, m["best_throughput_per_s"], _mib(m["memory_bytes"])] for n, m in section["models"].items()]
    lines += _table(["model", "best throughput/s", "memory MiB"], rows)
    lines.append(f"gpu_memory_budget in the profile: {section['gpu_memory_budgets_in_profile']}")
    lines.append("")
    if "plan_pending" in section:
        lines.append(f"Plan pending: {section['plan_pending']}")
    else:
        lines.append(f"`{section['plan_command']}` -> {section['plan_says']}")
    return [*lines, ""]


def _budgets(section: dict[str, Any]) -> list[str]:
    if "need_per_model" not in section:
        return []
    lines = [f"## GPU memory per model (device total {_mib(section['device_total_bytes'])} MiB)", ""]
    rows = [
        [
            n,
            _mib(need["weights_bytes"]),
            _mib(need["working_bytes"]),
            _mib(need["total_bytes"]),
            section["budgets"].get(n, "-"),
        ]
        for n, need in section["need_per_model"].items()
    ]
    return lines + _table(
        ["model", "weights MiB", "working MiB (largest batch)", "total MiB", "gpu_memory_budget in the test"],
        rows,
    )
