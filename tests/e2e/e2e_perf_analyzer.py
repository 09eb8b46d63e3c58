"""Running perf_analyzer 2.51 (installed by scripts/install_perf_analyzer.sh) against a live server
and reading the server-side statistics it prints, for the end-to-end test modules.

perf_analyzer prints a "Server:" block for the measured model and, when that model is an ensemble,
a "Composing models:" block with one entry per model its ensemble_scheduling steps name. It builds
that list from the model's config (GET .../config, or the gRPC ModelConfig) and then asks the
statistics endpoint for every composing model, so both answers must be right for the block to appear.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from tritonclient.utils import serialize_byte_tensor

PERF_ANALYZER = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "perf_analyzer"

needs_perf_analyzer = pytest.mark.skipif(
    not PERF_ANALYZER.is_file(), reason="perf_analyzer not installed (run scripts/install_perf_analyzer.sh)"
)

# Short measurements with a loose stability bound: these runs check the protocol, not speed.
QUICK_MEASUREMENT = (
    "--measurement-mode", "count_windows",
    "--stability-percentage", "1000",
    "--max-trials", "3",
)  # fmt: skip

_MODEL_HEADER = re.compile(r"^\s*(?P<name>[^\s,]+), version: (?P<version>\S*)\s*$")
_COUNT = re.compile(r"^\s*(?P<key>Inference count|Execution count|Successful request count): (?P<value>\d+)")
_LATENCY = re.compile(r"^\s*Avg request latency: (?P<total>\d+) usec \((?P<parts>[^)]*)\)")
_LATENCY_PART = re.compile(r"(?P<name>[a-z][a-z ]*?) (?P<usec>\d+) usec")


@dataclass
class ServerStats:
    """One model's server-side block: counts by their printed name, latency parts in usec
    (keys such as "queue", "compute", "compute infer", "overhead")."""

    counts: dict[str, int] = field(default_factory=dict)
    latency_usec: int | None = None
    latency_parts_usec: dict[str, int] = field(default_factory=dict)


@dataclass
class PerfReport:
    output: str
    server: ServerStats
    composing: dict[str, ServerStats]


def _read_stats_line(line: str, stats: ServerStats) -> None:
    if count := _COUNT.match(line):
        stats.counts[count["key"]] = int(count["value"])
    elif latency := _LATENCY.match(line):
        stats.latency_usec = int(latency["total"])
        stats.latency_parts_usec = {
            part["name"].strip(): int(part["usec"]) for part in _LATENCY_PART.finditer(latency["parts"])
        }


def parse_report(output: str) -> PerfReport:
    """Read the last concurrency's "Server:" and "Composing models:" blocks of perf_analyzer's
    console output. Raises AssertionError when there is no "Server:" block."""
    assert "Server:" in output, f"perf_analyzer printed no server-side statistics:\n{output}"
    last = output[output.rindex("Server:") :]
    server_part, _, composing_part = last.partition("Composing models:")
    # The server block ends at the first blank line (then the composing block or the summary).
    server = ServerStats()
    for line in server_part.split("\n\n", 1)[0].splitlines():
        _read_stats_line(line, server)
    composing: dict[str, ServerStats] = {}
    current: ServerStats | None = None
    for line in composing_part.splitlines():
        if line.startswith("Inferences/Second vs."):
            break
        if header := _MODEL_HEADER.match(line):
            current = composing.setdefault(header["name"], ServerStats())
        elif current is not None:
            _read_stats_line(line, current)
    return PerfReport(output, server, composing)


def run_perf_analyzer(
    model: str,
    url: str,
    *,
    protocol: str = "http",
    streaming: bool = False,
    extra_args: Sequence[str] = (),
    timeout_s: float = 120.0,
) -> PerfReport:
    """Run perf_analyzer against `url` (host:port of the `protocol` endpoint); it must exit 0
    without reporting an error. Returns its parsed report."""
    command = [str(PERF_ANALYZER), "-m", model, "-i", protocol, "-u", url, *QUICK_MEASUREMENT]
    if streaming:
        command.append("--streaming")
    command += list(extra_args)
    finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, f"{' '.join(command)} exited {finished.returncode}:\n{output}"
    assert "error" not in output.lower(), output
    return parse_report(output)


def write_bytes_input_data(path: Path, input_name: str, payload: bytes, shape: Sequence[int]) -> Path:
    """An --input-data JSON file sending `payload` as the one element of a BYTES input.

    perf_analyzer sends a "b64" value's decoded bytes as the tensor's raw wire data, so for BYTES
    they must already be the serialized tensor (each element prefixed by its 4-byte length)."""
    element = np.array([payload], dtype=np.object_).reshape(tuple(shape))
    # A 0-d object array holding the whole serialized tensor as one `bytes` value.
    wire = serialize_byte_tensor(element)
    assert wire is not None  # only None for an empty tensor
    serialized: bytes = wire.item()
    document = {
        "data": [
            {
                input_name: {
                    "content": {"b64": base64.b64encode(serialized).decode("ascii")},
                    "shape": list(shape),
                }
            }
        ]
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    return path
