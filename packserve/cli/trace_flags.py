"""--trace-config and Triton's deprecated --trace-* flags -> TraceSettings.

`--trace-config level=TIMESTAMPS`, `rate=N`, `count=N`, `mode=triton|opentelemetry` set global
values; `--trace-config triton,file=PATH`, `triton,log-frequency=N`, and
`--trace-config opentelemetry,url=URL`, `opentelemetry,resource=KEY=VALUE` set a mode's own.
Anything else is refused with the setting's name.
"""

from __future__ import annotations

from collections.abc import Sequence

import typer

from packserve.cli.extras import missing_modules
from packserve.core.tracing import MODES, TraceSettings, check, parse_level, parse_number
from packserve.errors import PackserveError

_FLAG = "--trace-config"


def _bad(message: str, flag: str = _FLAG) -> typer.BadParameter:
    return typer.BadParameter(message, param_hint=flag)


def trace_settings(
    configs: Sequence[str],
    file: str | None = None,
    levels: Sequence[str] = (),
    rate: int | None = None,
    count: int | None = None,
    log_frequency: int | None = None,
) -> TraceSettings:
    values: dict[str, object] = {}
    resource: dict[str, str] = {}
    try:
        if file is not None:
            values["file"] = file
        if levels:
            values["level"] = parse_level(levels)
        if rate is not None:
            values["rate"] = parse_number("trace_rate", str(rate))
        if count is not None:
            values["count"] = parse_number("trace_count", str(count))
        if log_frequency is not None:
            values["log_frequency"] = parse_number("log_frequency", str(log_frequency))
        for config in configs:
            mode, _, setting = config.partition(",") if "," in config else ("", "", config)
            key, equals, value = setting.partition("=")
            if not equals:
                raise _bad(f"'{config}' is not [<mode>,]<setting>=<value>")
            if mode == "":
                if key == "level":
                    values["level"] = parse_level([value])
                elif key in ("rate", "count"):
                    values[key] = parse_number(f"trace_{key}", value)
                elif key == "mode":
                    if value not in MODES:
                        raise _bad(f"trace mode '{value}' is not one of {', '.join(MODES)}")
                    values["mode"] = value
                else:
                    raise _bad(f"unknown global trace setting '{key}' (level, rate, count, mode)")
            elif mode == "triton" and key == "file":
                values["file"] = value
            elif mode == "triton" and key == "log-frequency":
                values["log_frequency"] = parse_number("log_frequency", value)
            elif mode == "opentelemetry" and key == "url":
                values["url"] = value if "://" in value else f"http://{value}"
            elif mode == "opentelemetry" and key == "resource":
                name, _, resource_value = value.partition("=")
                resource[name] = resource_value
            else:
                raise _bad(f"unsupported trace setting '{config}'")
        settings = TraceSettings(**{**TraceSettings().__dict__, **values, "resource": resource})
        check(settings)
    except PackserveError as exc:
        raise _bad(str(exc)) from None
    if settings.mode == "opentelemetry" and missing_modules("trace"):
        raise _bad("opentelemetry mode needs the 'trace' extra: pip install 'packserve[trace]'")
    return settings
