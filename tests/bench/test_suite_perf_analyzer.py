"""Reading perf_analyzer's CSV and output, building its command, and the unstable-run fallback."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bench.suite.perf_analyzer import (
    PerfRun,
    build_command,
    measure,
    parse_csv,
    parse_result,
    parse_server_stats,
    run_perf_analyzer,
)
from packserve.errors import InvalidArgumentError, UnavailableError

# Captured from perf_analyzer 2.51 against `packserve serve` (HTTP, --verbose-csv).
VERBOSE_CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,"
    "Avg latency,request/response,response wait\n"
    "8,2555.36,78,2088,775,48,96,31,0,2993,4147,4498,5488,3119,78,3027\n"
)
# gRPC without --verbose-csv: fewer columns, no average latency.
PLAIN_CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
    "8,983.781,6,7208,751,30,97,18,3,6688,13179,20239,33740\n"
)
# perf_analyzer ends the "Client:" and "Server:" lines with a space.
STDOUT = "\n".join(
    [
        "Request concurrency: 8",
        "  Client: ",
        "    Request count: 18941",
        "    Throughput: 2555.36 infer/sec",
        "    p99 latency: 5488 usec",
        "  Server: ",
        "    Inference count: 18940",
        "    Execution count: 4441",
        "    Successful request count: 18941",
        "    Avg request latency: 1650 usec (overhead 698 usec + queue 775 usec + compute input 48 usec + "
        "compute infer 96 usec + compute output 31 usec)",
        "",
        "Inferences/Second vs. Client Average Batch Latency",
    ]
)


def test_csv_columns_are_read_by_name() -> None:
    verbose = parse_csv(VERBOSE_CSV)[0]
    plain = parse_csv(PLAIN_CSV)[0]
    assert verbose["Inferences/Second"] == pytest.approx(2555.36)
    assert verbose["Avg latency"] == 3119
    assert plain["p99 latency"] == 33740
    assert "Avg latency" not in plain


def test_csv_stops_at_the_end_of_the_concurrency_table() -> None:
    text = PLAIN_CSV + "\nServer Metrics\nGPU Utilization,0\n"
    assert len(parse_csv(text)) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("Concurrency,p50 latency\n8,1\n", "lacks column.*Inferences/Second"),
        (PLAIN_CSV.replace("983.781", "fast"), "not numeric"),
    ],
)
def test_bad_csv_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        parse_csv(text)


def test_a_csv_without_its_row_is_refused() -> None:
    header_only = PLAIN_CSV.splitlines()[0] + "\n"
    with pytest.raises(InvalidArgumentError, match="'simple' over grpc: expected 1 row, got 0"):
        parse_result("simple", "grpc", header_only, "")


def test_server_block_is_parsed_with_its_latency_breakdown() -> None:
    stats = parse_server_stats(STDOUT)
    assert stats is not None
    assert (stats.inference_count, stats.execution_count, stats.success_count) == (18940, 4441, 18941)
    assert stats.avg_request_latency_us == 1650
    assert (stats.overhead_us, stats.queue_us, stats.compute_infer_us) == (698, 775, 96)
    assert stats.compute_input_us == 48 and stats.compute_output_us == 31
    assert stats.avg_batch_size == pytest.approx(18940 / 4441)


def test_missing_server_block_gives_none() -> None:
    assert parse_server_stats("Request concurrency: 8\n  Client: \n    Request count: 5\n") is None
    point = parse_result("simple", "http", VERBOSE_CSV, "no server block here")
    assert point.server is None
    assert point.rows_per_s == pytest.approx(2555.36)
    assert (point.p50_us, point.p99_us, point.avg_us) == (2993, 5488, 3119)


def _run(**changes: object) -> PerfRun:
    base = {
        "model": "simple",
        "protocol": "grpc",
        "url": "localhost:31001",
        "concurrency": 8,
        "measurement_interval_ms": 2000,
        "stability_percentage": 50.0,
        "max_trials": 6,
    }
    base.update(changes)
    return PerfRun(**base)  # type: ignore[arg-type]


def test_command_uses_binary_tensors_and_one_concurrency() -> None:
    command = build_command(Path("/pa"), _run(shapes=("INPUT:3,4",)), Path("/o/x.csv"))
    joined = " ".join(command)
    assert "--concurrency-range 8:8" in joined
    assert "--input-tensor-format binary --output-tensor-format binary" in joined
    assert "--measurement-interval 2000" in joined and "--request-count" not in joined
    assert "-i grpc" in joined and "--shape INPUT:3,4" in joined


def test_command_with_a_request_count_has_no_stability_flags() -> None:
    joined = " ".join(build_command(Path("/pa"), _run(request_count=400), Path("/o/x.csv")))
    assert "--request-count 400" in joined
    assert "--stability-percentage" not in joined and "--measurement-interval" not in joined


@pytest.mark.parametrize(
    ("changes", "message"), [({"protocol": "ftp"}, "protocol"), ({"concurrency": 0}, ">= 1")]
)
def test_bad_run_is_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        build_command(Path("/pa"), _run(**changes), Path("/o/x.csv"))


def _fake_perf_analyzer(tmp_path: Path, stable: bool) -> Path:
    """A stand-in that behaves like perf_analyzer 2.51: unstable windows exit 1 with no CSV; a
    --request-count run writes the CSV. Each call's arguments are appended to calls.txt."""
    script = tmp_path / "perf_analyzer"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$@" >> "{tmp_path}/calls.txt"\n'
        'csv=""; counted=0; prev=""\n'
        'for arg in "$@"; do\n'
        '  [ "$prev" = "-f" ] && csv="$arg"\n'
        '  [ "$arg" = "--request-count" ] && counted=1\n'
        '  prev="$arg"\n'
        "done\n"
        f'if [ "$counted" = 0 ] && [ "{int(stable)}" = 0 ]; then\n'
        '  echo "Failed to obtain stable measurement within 6 measurement windows"; exit 1\n'
        "fi\n"
        f"printf '%s' '{PLAIN_CSV}' > \"$csv\"\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_stable_run_is_kept_as_is(tmp_path: Path) -> None:
    binary = _fake_perf_analyzer(tmp_path, stable=True)
    point = measure(binary, _run(), tmp_path, timeout_s=30)
    assert point.mode == "stable"
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 1
    assert (tmp_path / "simple_grpc_c8.log").is_file()


def test_unstable_run_falls_back_to_a_probed_request_count(tmp_path: Path) -> None:
    binary = _fake_perf_analyzer(tmp_path, stable=False)
    point = measure(binary, _run(), tmp_path, timeout_s=30)
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 3  # the unstable try, the probe, the fixed count
    assert "--request-count 80" in calls[1]  # 10 requests per unit of concurrency
    # The probe reported 983.781 rows/s; 3 windows of 2 s -> 5903 requests.
    assert "--request-count 5903" in calls[2]
    assert point.mode == "request_count"
    assert point.rows_per_s == pytest.approx(983.781)


def test_a_failing_run_is_unavailable_with_its_output(tmp_path: Path) -> None:
    script = tmp_path / "perf_analyzer"
    script.write_text("#!/usr/bin/env bash\necho 'error: failed to get model metadata'; exit 99\n")
    script.chmod(0o755)
    with pytest.raises(UnavailableError, match="failed to get model metadata"):
        run_perf_analyzer(script, _run(), tmp_path, timeout_s=30)


def test_a_relative_results_folder_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # perf_analyzer runs inside the results folder, so the CSV path it is given must not be relative.
    binary = _fake_perf_analyzer(tmp_path, stable=True)
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    point = measure(binary, _run(), Path("out"), timeout_s=30)
    assert point.rows_per_s == pytest.approx(983.781)
    assert (tmp_path / "out" / "simple_grpc_c8.csv").is_file()
