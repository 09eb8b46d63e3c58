"""`python -m bench.suite`: see bench/README.md."""

from __future__ import annotations

import sys

from rich.console import Console

from bench.suite.options import parse_options
from bench.suite.runner import run_suite
from packserve.errors import PackserveError


def main(argv: list[str] | None = None) -> int:
    # Piped to a file or CI log, rich would wrap the tables to 80 columns and cut the figures.
    console = Console(width=None if sys.stdout.isatty() else 140)
    try:
        options = parse_options(argv)
        run_suite(options, console)
    except PackserveError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
