from __future__ import annotations

from pathlib import Path

import pytest

from packserve.config.versions import available_versions, select_versions
from packserve.errors import ConfigError
from packserve.model_spec import VersionPolicy


def test_available_versions_are_numbered_folders(tmp_path: Path) -> None:
    for name in ("1", "3", "10", "0", "01", "v2", "latest"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file, not a version")
    assert available_versions(tmp_path) == [1, 3, 10]


def test_missing_model_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot list model folder"):
        available_versions(tmp_path / "absent")


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy(), [10]),
        (VersionPolicy(kind="latest", latest_num_versions=2), [3, 10]),
        (VersionPolicy(kind="latest", latest_num_versions=9), [1, 3, 10]),
        (VersionPolicy(kind="all"), [1, 3, 10]),
        (VersionPolicy(kind="specific", specific_versions=(3, 1)), [1, 3]),
    ],
)
def test_select_versions_newest_last(policy: VersionPolicy, expected: list[int]) -> None:
    assert select_versions(policy, [10, 1, 3]) == expected


@pytest.mark.parametrize(
    ("policy", "available", "fragment"),
    [
        (VersionPolicy(), [], "no model versions found"),
        (VersionPolicy(kind="specific", specific_versions=(2, 3)), [1, 3], r"asks for version\(s\) \[2\]"),
        (VersionPolicy(kind="specific"), [1], "lists no versions"),
        (VersionPolicy(kind="latest", latest_num_versions=0), [1], "num_versions must be >= 1"),
        (VersionPolicy(kind="newest"), [1], "unknown version policy kind 'newest'"),
    ],
)
def test_select_versions_errors(policy: VersionPolicy, available: list[int], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        select_versions(policy, available)
