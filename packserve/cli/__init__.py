"""The `packserve` command line: parse -> options object -> one call."""

from __future__ import annotations

import sys

import typer

from packserve import __version__
from packserve.cli.serve import serve_command
from packserve.cli.triton_flags import normalize_argv

app = typer.Typer(
    name="packserve",
    help="Serve many small vision models from one process per GPU over the KServe v2 / Triton protocol.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve_command)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"packserve {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """Serve many small vision models from one process per GPU over the KServe v2 / Triton protocol."""


def _register_optional_commands() -> None:
    # Planning and the demo need extras (OR-Tools, SimPy, matplotlib); serving must not.
    from packserve.cli import demo_commands

    demo_commands.register(app)
    try:
        from packserve.cli import planning_commands
    except ImportError:  # pragma: no cover - only without the planning extra
        return
    planning_commands.register(app)


_register_optional_commands()


def main() -> None:
    app(args=normalize_argv(sys.argv[1:]), prog_name="packserve")
