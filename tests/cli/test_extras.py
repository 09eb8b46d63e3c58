"""On an install without an extra, its commands name the extra to install (no traceback)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from packserve.cli import app, extras


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["demo"], "demo"),
        (["profile", "--model-repository", "."], "planning"),
    ],
)
def test_missing_extra_is_named(monkeypatch: pytest.MonkeyPatch, argv: list[str], extra: str) -> None:
    monkeypatch.setitem(extras.EXTRA_MODULES, extra, ("packserve_no_such_module_for_test",))
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert f"needs the '{extra}' extra" in result.output
    assert f"pip install 'packserve[{extra}]'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(("extra", "argv"), [("demo", ["demo"]), ("planning", ["profile", "--model-repository", "."])])
def test_this_install(extra: str, argv: list[str]) -> None:
    """In the dev environment every extra is there; on a base install (scripts/test_pythons.sh) the
    real command, not a patched table, must name its extra."""
    missing = extras.missing_modules(extra)
    if not missing:
        return
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and f"needs the '{extra}' extra" in result.output
