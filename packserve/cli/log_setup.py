"""Logging as Triton's --log-* flags configure it: format, file, per-level switches, verbosity.

Formats (--log-format):
  default   `I1207 05:15:00.123456 4242 engine.py:120] message`   (Triton's own layout)
  ISO8601   `2026-12-07T05:15:00Z I 4242 engine.py:120] message`
  json      one JSON object per line (time, level, pid, logger, file, line, message, exception)
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from packserve.frontends import request_log

LOG_FORMATS = ("default", "ISO8601", "json")
_LETTER = {"DEBUG": "V", "INFO": "I", "WARNING": "W", "ERROR": "E", "CRITICAL": "E"}


@dataclass(frozen=True)
class LogSettings:
    verbose: int = 0  # --log-verbose: 1 = a line per request, 2 = also its tensors / headers
    file: Path | None = None  # --log-file: append there instead of stderr
    format: str = "default"  # --log-format
    info: bool = True  # --log-info
    warning: bool = True  # --log-warning
    error: bool = True  # --log-error


class _TritonFormatter(logging.Formatter):
    def __init__(self, iso8601: bool) -> None:
        super().__init__()
        self._iso8601 = iso8601

    def format(self, record: logging.LogRecord) -> str:
        letter = _LETTER.get(record.levelname, "I")
        if self._iso8601:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
            head = f"{stamp} {letter}"
        else:
            local = time.localtime(record.created)
            micros = int((record.created % 1) * 1_000_000)
            head = f"{letter}{time.strftime('%m%d %H:%M:%S', local)}.{micros:06d}"
        text = f"{head} {record.process} {record.filename}:{record.lineno}] {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int((record.created % 1) * 1_000_000):06d}Z",
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "file": record.filename,
            "line": record.lineno,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


class _LevelSwitch(logging.Filter):
    """--log-info/--log-warning/--log-error false silence that level (and only that level)."""

    def __init__(self, settings: LogSettings) -> None:
        super().__init__()
        self._off = {
            level
            for level, on in (
                (logging.INFO, settings.info),
                (logging.WARNING, settings.warning),
                (logging.ERROR, settings.error),
                (logging.CRITICAL, settings.error),
            )
            if not on
        }

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno not in self._off


def make_formatter(log_format: str) -> logging.Formatter:
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format '{log_format}' is not one of {', '.join(LOG_FORMATS)}")
    if log_format == "json":
        return _JsonFormatter()
    return _TritonFormatter(iso8601=log_format == "ISO8601")


def configure_logging(settings: LogSettings) -> logging.Handler:
    """Install one handler on the root logger (replacing any) and return it."""
    handler: logging.Handler
    if settings.file is not None:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(settings.file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(settings.format))
    handler.addFilter(_LevelSwitch(settings))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Verbose detail is packserve's own; third-party loggers (grpc, asyncio) stay at INFO.
    root.setLevel(logging.INFO)
    logging.getLogger("packserve").setLevel(logging.DEBUG if settings.verbose > 0 else logging.INFO)
    request_log.set_verbosity(settings.verbose)
    return handler
