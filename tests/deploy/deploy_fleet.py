"""The README's "Sizing a fleet" commands, found in README.md and run as written, in a scratch
folder where `.venv` points at this checkout's virtualenv so the README's relative paths resolve."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 300


@dataclass(frozen=True)
class CommandRun:
    command: str
    returncode: int
    output: str


@dataclass(frozen=True)
class Fleet:
    workdir: Path
    runs: tuple[CommandRun, ...]

    @property
    def ok(self) -> bool:
        return all(run.returncode == 0 for run in self.runs)

    def failure(self) -> str:
        bad = next(run for run in self.runs if run.returncode != 0)
        return f"`{bad.command}` exited {bad.returncode}:\n{bad.output[-3000:]}"


def readme_section_commands(section: str) -> list[str]:
    """The command lines of the first ```bash block under the README heading `section`."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    _, found, rest = text.partition(f"\n## {section}\n")
    assert found, f"README has no '## {section}' section"
    body = rest.split("\n## ", 1)[0]
    _, fence, block = body.partition("```bash\n")
    assert fence, f"README section '{section}' has no bash block"
    lines = block.split("\n```", 1)[0].splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def run_in(workdir: Path, command: str) -> CommandRun:
    # PYTHONPATH: the checkout's packserve even where the venv has another one installed.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    return CommandRun(command, done.returncode, done.stdout + done.stderr)


def run_fleet(workdir: Path) -> Fleet:
    (workdir / ".venv").symlink_to(REPO_ROOT / ".venv")
    runs: list[CommandRun] = []
    for command in readme_section_commands("Sizing a fleet"):
        runs.append(run_in(workdir, command))
        if runs[-1].returncode != 0:
            break
    return Fleet(workdir, tuple(runs))
