"""Commands that need an optional extra say which one, instead of a ModuleNotFoundError traceback."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

Command = TypeVar("Command", bound=Callable[..., Any])

# The modules each extra brings that its commands import (pyproject.toml [project.optional-dependencies]).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "demo": ("skimage", "requests", "matplotlib", "geventhttpclient"),
    "planning": ("ortools", "simpy", "matplotlib", "geventhttpclient"),
    "trace": ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"),
}


def missing_modules(extra: str) -> list[str]:
    missing = []
    for module in EXTRA_MODULES[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def needs_extra(extra: str, command_name: str) -> Callable[[Command], Command]:
    """Wrap a typer command: before it runs, check its extra is installed; exit 2 with the pip
    command to run when it is not."""

    def wrap(command: Command) -> Command:
        @functools.wraps(command)
        def checked(*args: Any, **kwargs: Any) -> Any:
            missing = missing_modules(extra)
            if missing:
                Console(stderr=True).print(
                    f"[red]packserve {command_name} needs the '{extra}' extra "
                    f"(missing: {', '.join(missing)}). Install it with:[/red]\n"
                    + escape(f"    pip install 'packserve[{extra}]'"),
                    soft_wrap=True,
                )
                raise typer.Exit(2)
            return command(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return wrap
