"""Render a registry in the Prometheus text format (0.0.4) with Triton's counter names.

prometheus_client's own renderer appends `_total` to every counter; Triton exposes
`nv_inference_request_success` without it, and dashboards written for Triton query that name. So this
renderer writes each family under its own name and each sample exactly as the collector named it.
"""

from __future__ import annotations

from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# OpenMetrics-only types and what the 0.0.4 text format calls them.
_TEXT_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
# Samples the 0.0.4 format has no place for.
_OPENMETRICS_ONLY_SUFFIXES = ("_created", "_gsum", "_gcount")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def render(registry: Collector) -> bytes:
    lines: list[str] = []
    for family in registry.collect():
        name = family.name
        family_type = _TEXT_TYPES.get(family.type, family.type)
        if family.type == "info":
            name += "_info"
        lines.append(f"# HELP {name} {_escape_help(family.documentation)}\n")
        lines.append(f"# TYPE {name} {family_type}\n")
        for sample in family.samples:
            if sample.name.endswith(_OPENMETRICS_ONLY_SUFFIXES) and sample.name != family.name:
                continue
            if sample.labels:
                pairs = sorted(sample.labels.items())
                label_text = ",".join(f'{key}="{_escape_label_value(str(value))}"' for key, value in pairs)
                lines.append(f"{sample.name}{{{label_text}}} {floatToGoString(sample.value)}\n")
            else:
                lines.append(f"{sample.name} {floatToGoString(sample.value)}\n")
    return "".join(lines).encode("utf-8")
