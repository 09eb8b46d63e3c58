"""tritonserver's flags on `packserve serve`: parsing, checks and the log formats (no server)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from packserve.cli import app, serve
from packserve.cli import triton_flags as flags
from packserve.cli.log_setup import LogSettings, configure_logging, make_formatter
from packserve.cli.serve import ServeOptions
from packserve.frontends import request_log
from packserve.frontends.grpc.native_settings import PingPolicy


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("ON", True), ("false", False), ("0", False), ("no", False)],
)
def test_triton_booleans_take_a_value(text: str, expected: bool) -> None:
    assert flags.parse_bool(text, "--allow-http") is expected


def test_a_bad_boolean_names_the_flag() -> None:
    with pytest.raises(typer.BadParameter, match="'maybe' is not a boolean"):
        flags.parse_bool("maybe", "--strict-readiness")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve", "--log-verbose"], ["serve", "--log-verbose=1"]),
        (["serve", "--log-verbose", "--http-port", "1"], ["serve", "--log-verbose=1", "--http-port", "1"]),
        (["serve", "--log-verbose", "2"], ["serve", "--log-verbose", "2"]),
        (["serve", "--log-verbose=3"], ["serve", "--log-verbose=3"]),
    ],
)
def test_bare_log_verbose_still_means_on(argv: list[str], expected: list[str]) -> None:
    assert flags.normalize_argv(argv) == expected


def test_strict_model_config_and_disable_auto_complete() -> None:
    assert flags.auto_complete_enabled(False, None)
    assert not flags.auto_complete_enabled(True, None)
    assert not flags.auto_complete_enabled(False, "true")
    assert flags.auto_complete_enabled(False, "false")


def test_model_config_name_refuses_spaces() -> None:
    assert flags.check_config_name("h100") == "h100"
    with pytest.raises(typer.BadParameter, match="spaces"):
        flags.check_config_name("h 100")


def test_listeners_need_a_protocol_and_a_positive_interval() -> None:
    chosen = flags.listeners("true", "false", "false", "true", "false", 500.0)
    assert (chosen.http, chosen.grpc, chosen.metrics, chosen.gpu_metrics) == (True, False, False, False)
    with pytest.raises(typer.BadParameter, match="cannot both be false"):
        flags.listeners("false", "0", "true", "true", "true", 2000.0)
    with pytest.raises(typer.BadParameter, match="more than 0"):
        flags.listeners("true", "true", "true", "true", "true", 0.0)


def test_repositories_are_checked_and_deduplicated(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert flags.model_repositories([tmp_path / "a", tmp_path / "a"]) == ((tmp_path / "a").resolve(),)
    with pytest.raises(typer.BadParameter, match="is not a directory"):
        flags.model_repositories([tmp_path / "a", tmp_path / "missing"])


@pytest.mark.parametrize("flag", ["--http-port", "--grpc-port", "--metrics-port"])
def test_out_of_range_ports_are_refused_without_a_traceback(flag: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--model-repository", str(tmp_path), flag, "99999"])
    assert result.exit_code == 2
    assert flag in result.output and "65535" in result.output
    assert "Traceback" not in result.output


def test_bad_flag_values_are_usage_errors(tmp_path: Path) -> None:
    for extra in (["--log-format", "xml"], ["--allow-http", "perhaps"], ["--model-load-thread-count", "0"]):
        result = CliRunner().invoke(app, ["serve", "--model-repository", str(tmp_path), *extra])
        assert result.exit_code == 2, (extra, result.output)


def _served_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> ServeOptions:
    """What `packserve serve` would run with these flags (the server itself is not started)."""
    seen: list[ServeOptions] = []

    async def record(options: ServeOptions) -> None:
        seen.append(options)

    monkeypatch.setattr(serve, "run_server", record)
    monkeypatch.setattr(serve, "configure_logging", lambda settings: None)  # the test run's logging stays
    result = CliRunner().invoke(app, ["serve", "--model-repository", str(tmp_path), *extra])
    assert result.exit_code == 0, result.output
    return seen[0]


def test_grpc_connection_flags_reach_the_grpc_server_with_tritons_names_units_and_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _served_options(tmp_path, monkeypatch).grpc.pings == PingPolicy(
        keepalive_s=7200.0, keepalive_timeout_s=20.0, keepalive_without_calls=False, max_pings_without_data=2,
        min_ping_interval_without_data_s=300.0, max_ping_strikes=2, max_connection_age_s=0.0,
        max_connection_age_grace_s=0.0,
    )  # fmt: skip
    flags_given = [
        "--grpc-keepalive-time", "10000", "--grpc-keepalive-timeout", "500",
        "--grpc-keepalive-permit-without-calls", "true", "--grpc-http2-max-pings-without-data", "0",
        "--grpc-http2-min-recv-ping-interval-without-data", "1000", "--grpc-http2-max-ping-strikes", "7",
        "--grpc-max-connection-age", "60000", "--grpc-max-connection-age-grace", "3000",
    ]  # fmt: skip
    assert _served_options(tmp_path, monkeypatch, *flags_given).grpc.pings == PingPolicy(
        keepalive_s=10.0, keepalive_timeout_s=0.5, keepalive_without_calls=True, max_pings_without_data=0,
        min_ping_interval_without_data_s=1.0, max_ping_strikes=7, max_connection_age_s=60.0,
        max_connection_age_grace_s=3.0,
    )  # fmt: skip


def test_response_cache_byte_size_is_the_old_spelling_of_cache_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = _served_options(tmp_path, monkeypatch, "--response-cache-byte-size", "4096")
    assert options.engine.response_cache_bytes == 4096
    assert _served_options(tmp_path, monkeypatch, "--rate-limit", "off").engine.response_cache_bytes == 0
    both = ["--response-cache-byte-size", "1", "--cache-config", "local,size=2"]
    result = CliRunner().invoke(app, ["serve", "--model-repository", str(tmp_path), *both])
    assert result.exit_code == 2 and "give the cache size once" in result.output


def test_model_load_gpu_limit_reaches_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = ["--model-load-gpu-limit", "0:0.75", "--model-load-gpu-limit", "2:0.5"]
    assert dict(_served_options(tmp_path, monkeypatch, *given).engine.gpu_load_limits.fractions) == {
        0: 0.75,
        2: 0.5,
    }
    result = CliRunner().invoke(
        app, ["serve", "--model-repository", str(tmp_path), "--model-load-gpu-limit", "0:80%"]
    )
    assert result.exit_code == 2 and "'0:80%' is not <device" in result.output


@pytest.mark.parametrize(
    "extra",
    [["--rate-limit", "execution_count"], ["--rate-limit-resource", "R1:4"]],
    ids=["mode", "resource"],
)
def test_a_rate_limiter_is_refused_with_the_reason(tmp_path: Path, extra: list[str]) -> None:
    result = CliRunner().invoke(app, ["serve", "--model-repository", str(tmp_path), *extra])
    assert result.exit_code == 2
    assert "no rate limiter" in " ".join(result.output.split())


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("packserve ")


def _record(level: int, message: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("packserve.test", level, "/x/engine.py", 42, message, None, exc_info)


def test_log_formats() -> None:
    default = make_formatter("default").format(_record(logging.WARNING, "hello"))
    assert default.startswith("W") and default.endswith(" engine.py:42] hello")
    iso = make_formatter("ISO8601").format(_record(logging.ERROR, "boom"))
    assert iso[4] == "-" and iso[10] == "T" and "Z E " in iso and iso.endswith("] boom")
    try:
        raise ValueError("inside")
    except ValueError as error:
        line = make_formatter("json").format(_record(logging.ERROR, "bad", error))
    document = json.loads(line)
    assert document["level"] == "ERROR" and document["message"] == "bad" and document["line"] == 42
    assert "ValueError: inside" in document["exception"]


def test_log_file_level_switches_and_verbosity(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "server.log"
    handler = configure_logging(LogSettings(verbose=2, file=target, info=False, format="ISO8601"))
    try:
        logging.getLogger("packserve.x").info("quiet info")
        logging.getLogger("packserve.x").warning("loud warning")
        logging.getLogger("packserve.x").debug("verbose detail")
        assert request_log.verbosity() == 2
        handler.flush()
        text = target.read_text()
        assert "loud warning" in text and "verbose detail" in text and "quiet info" not in text
    finally:
        configure_logging(LogSettings())
        handler.close()
    assert request_log.verbosity() == 0
