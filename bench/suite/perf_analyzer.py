"""Run perf_analyzer against the served models and read its figures.

Figures come from its CSV (`-f`), read by column name because `--verbose-csv` and the protocol change
which columns it writes. The server-side block ("Server:" under a concurrency) only appears on its
standard output, and only when the server lists the `statistics` extension, so it is parsed there.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.suite.results import ServedPoint, ServerSideStats
from packserve.errors import InvalidArgumentError, UnavailableError

# Installed by scripts/install_perf_analyzer.sh.
DEFAULT_BINARY = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "perf_analyzer"

_REQUIRED_COLUMNS = (
    "Concurrency",
    "Inferences/Second",
    "p50 latency",
    "p90 latency",
    "p95 latency",
    "p99 latency",
)


@dataclass(frozen=True, slots=True)
class PerfRun:
    """One perf_analyzer invocation: one model, one protocol, one concurrency."""

    model: str
    protocol: str  # "http" | "grpc"
    url: str  # host:port of that protocol's endpoint
    concurrency: int
    measurement_interval_ms: int
    stability_percentage: float
    max_trials: int
    batch_size: int = 1
    shapes: tuple[str, ...] = ()  # "name:d1,d2" for inputs with variable dimensions
    # > 0: measure exactly this many requests, with no stability check (windows are not used).
    request_count: int = 0

    @property
    def stem(self) -> str:
        suffix = f"_n{self.request_count}" if self.request_count else ""
        return f"{self.model}_{self.protocol}_c{self.concurrency}{suffix}"


def find_binary(explicit: Path | None) -> Path:
    """The perf_analyzer to run: the given path, the project's install, or one on PATH."""
    candidates = [explicit] if explicit is not None else [DEFAULT_BINARY]
    if explicit is None:
        on_path = shutil.which("perf_analyzer")
        if on_path:
            candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return candidate
    raise UnavailableError(
        f"perf_analyzer not found (looked at {', '.join(str(c) for c in candidates)}); "
        "install it with `bash scripts/install_perf_analyzer.sh`"
    )


def build_command(binary: Path, run: PerfRun, csv_path: Path) -> list[str]:
    if run.protocol not in ("http", "grpc"):
        raise InvalidArgumentError(f"protocol must be 'http' or 'grpc', got '{run.protocol}'")
    if run.concurrency < 1:
        raise InvalidArgumentError(f"concurrency must be >= 1, got {run.concurrency}")
    command = [
        str(binary),
        "-m", run.model,
        "-u", run.url,
        "-i", run.protocol,
        "-b", str(run.batch_size),
        "--concurrency-range", f"{run.concurrency}:{run.concurrency}",
        # Binary tensors on HTTP as well (gRPC is always binary): the JSON path measures the codec.
        "--input-tensor-format", "binary",
        "--output-tensor-format", "binary",
        "--verbose-csv",
        "-f", str(csv_path),
    ]  # fmt: skip
    if run.request_count > 0:
        command += ["--request-count", str(run.request_count)]
    else:
        command += [
            "--measurement-interval", str(run.measurement_interval_ms),
            "--stability-percentage", str(run.stability_percentage),
            "--max-trials", str(run.max_trials),
        ]  # fmt: skip
    for shape in run.shapes:
        command += ["--shape", shape]
    return command


class UnstableMeasurement(UnavailableError):
    """perf_analyzer's windows never agreed within the stability percentage."""


_UNSTABLE_MARK = "Failed to obtain stable measurement"
PROBE_REQUESTS_PER_CONCURRENCY = 10
FALLBACK_WINDOWS = 3  # the fixed-count run should last about this many measurement intervals


def measure(binary: Path, run: PerfRun, work_dir: Path, timeout_s: float) -> ServedPoint:
    """Measure with perf_analyzer's stability check; when the windows never settle (a shared, busy
    machine), probe the throughput with a few requests and measure a fixed request count sized to
    last FALLBACK_WINDOWS intervals. The point's `mode` says which figures were kept."""
    try:
        return run_perf_analyzer(binary, run, work_dir, timeout_s)
    except UnstableMeasurement:
        pass
    probe = dataclasses.replace(run, request_count=run.concurrency * PROBE_REQUESTS_PER_CONCURRENCY)
    probed = run_perf_analyzer(binary, probe, work_dir, timeout_s)
    seconds = FALLBACK_WINDOWS * run.measurement_interval_ms / 1000
    count = max(probe.request_count, math.ceil(probed.rows_per_s / run.batch_size * seconds))
    fixed = dataclasses.replace(run, request_count=count)
    return dataclasses.replace(run_perf_analyzer(binary, fixed, work_dir, timeout_s), mode="request_count")


def run_perf_analyzer(binary: Path, run: PerfRun, work_dir: Path, timeout_s: float) -> ServedPoint:
    """Run one measurement; its CSV and full output are kept in `work_dir`. UnstableMeasurement when
    the windows did not settle, UnavailableError when it gave no figures for another reason."""
    work_dir = work_dir.resolve()  # perf_analyzer runs in work_dir: a relative -f path would nest
    csv_path = work_dir / f"{run.stem}.csv"
    log_path = work_dir / f"{run.stem}.log"
    csv_path.unlink(missing_ok=True)
    command = build_command(binary, run, csv_path)
    try:
        completed = subprocess.run(
            command, cwd=work_dir, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        log_path.write_text(" ".join(command) + "\n\n" + output)
        raise UnavailableError(f"perf_analyzer {run.stem}: no result within {timeout_s:.0f} s") from None
    output = completed.stdout + completed.stderr
    log_path.write_text(" ".join(command) + "\n\n" + output)
    if completed.returncode != 0 or not csv_path.is_file():
        error = UnstableMeasurement if _UNSTABLE_MARK in output else UnavailableError
        raise error(f"perf_analyzer {run.stem} exited {completed.returncode}: {_last_lines(output)}")
    return parse_result(run.model, run.protocol, csv_path.read_text(), completed.stdout)


def parse_result(model: str, protocol: str, csv_text: str, stdout: str) -> ServedPoint:
    rows = parse_csv(csv_text)
    if len(rows) != 1:
        raise InvalidArgumentError(
            f"perf_analyzer CSV for '{model}' over {protocol}: expected 1 row, got {len(rows)}"
        )
    row = rows[0]
    avg = row.get("Avg latency")
    return ServedPoint(
        model=model,
        protocol=protocol,
        concurrency=int(row["Concurrency"]),
        rows_per_s=row["Inferences/Second"],
        p50_us=row["p50 latency"],
        p90_us=row["p90 latency"],
        p95_us=row["p95 latency"],
        p99_us=row["p99 latency"],
        avg_us=avg,
        server=parse_server_stats(stdout),
    )


def parse_csv(text: str) -> list[dict[str, float]]:
    """perf_analyzer's `-f` CSV -> one dict per concurrency row, numbers as floats. Lines after the
    table (metrics sections, blank lines) are ignored."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InvalidArgumentError("perf_analyzer CSV is empty")
    reader = csv.reader(io.StringIO("\n".join(lines)))
    header = [name.strip() for name in next(reader)]
    missing = [name for name in _REQUIRED_COLUMNS if name not in header]
    if missing:
        raise InvalidArgumentError(
            f"perf_analyzer CSV lacks column(s) {', '.join(missing)}; header was: {', '.join(header)}"
        )
    rows: list[dict[str, float]] = []
    for cells in reader:
        if len(cells) != len(header) or not cells[0].strip().isdigit():
            break  # the concurrency table has ended
        try:
            rows.append({name: float(cell) for name, cell in zip(header, cells, strict=True)})
        except ValueError:
            raise InvalidArgumentError(f"perf_analyzer CSV row is not numeric: {','.join(cells)}") from None
    return rows


_SERVER_BLOCK = re.compile(
    r"^\s*Server:\s*\n"
    r"\s*Inference count:\s*(?P<inferences>\d+)\s*\n"
    r"\s*Execution count:\s*(?P<executions>\d+)\s*\n"
    r"\s*Successful request count:\s*(?P<successes>\d+)\s*\n"
    r"\s*Avg request latency:\s*(?P<latency>\d+(?:\.\d+)?) usec\s*\((?P<parts>[^)]*)\)",
    re.MULTILINE,
)
_PART = re.compile(r"(?P<name>[a-z ]+?)\s+(?P<us>\d+(?:\.\d+)?) usec")


def parse_server_stats(stdout: str) -> ServerSideStats | None:
    """The last "Server:" block of perf_analyzer's output, or None when it printed none."""
    matches = list(_SERVER_BLOCK.finditer(stdout))
    if not matches:
        return None
    block = matches[-1]
    parts = {
        m.group("name").strip().lstrip("+ ").strip(): float(m.group("us"))
        for m in _PART.finditer(block["parts"])
    }
    return ServerSideStats(
        inference_count=int(block["inferences"]),
        execution_count=int(block["executions"]),
        success_count=int(block["successes"]),
        avg_request_latency_us=float(block["latency"]),
        overhead_us=parts.get("overhead", 0.0),
        queue_us=parts.get("queue", 0.0),
        compute_input_us=parts.get("compute input", 0.0),
        compute_infer_us=parts.get("compute infer", 0.0),
        compute_output_us=parts.get("compute output", 0.0),
    )


def _last_lines(output: str, count: int = 3) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "(no output)"


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
