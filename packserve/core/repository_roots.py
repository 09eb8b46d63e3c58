"""The model repositories' folders: several served as one (Triton's repeated --model-repository),
and the file times poll mode compares.

A model name must be unique across the repositories: a name found in two of them is not served
(as in Triton), and its reason names both folders so the operator sees which copy to remove.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from packserve.errors import ModelLoadError


class RepositoryRoots:
    def __init__(self, roots: Sequence[Path]) -> None:
        if not roots:
            raise ValueError("at least one model repository is needed")
        self.roots = tuple(roots)

    @property
    def first(self) -> Path:
        return self.roots[0]

    def _holders(self, name: str) -> list[Path]:
        return [root for root in self.roots if (root / name).is_dir()]

    def scan(self) -> list[str]:
        """Model folders in every repository (hidden folders and files skipped), sorted, once each."""
        names: set[str] = set()
        for root in self.roots:
            if not root.is_dir():
                raise ModelLoadError(f"model repository '{root}' is not a directory")
            names.update(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        return sorted(names)

    def exists(self, name: str) -> bool:
        return bool(self._holders(name))

    def model_dir(self, name: str) -> Path:
        """The folder of `name` (the first repository's path when no repository holds it)."""
        holders = self._holders(name)
        return holders[0] / name if holders else self.first / name

    def duplicate_reason(self, name: str) -> str | None:
        """Why `name` cannot be served when two repositories hold it; None when it is unique."""
        holders = self._holders(name)
        if len(holders) < 2:
            return None
        places = ", ".join(f"'{root}'" for root in holders)
        return f"model '{name}' is in more than one model repository ({places}); model names must be unique"


def model_dir_mtime(model_dir: Path) -> float:
    """The newest modification time of anything in a model folder (for poll mode)."""
    newest = model_dir.stat().st_mtime
    for path in model_dir.rglob("*"):
        try:
            newest = max(newest, path.stat().st_mtime)
        except OSError:
            continue
    return newest
