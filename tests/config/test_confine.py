from __future__ import annotations

import os
from pathlib import Path

import pytest
from tritonclient.grpc.model_config_pb2 import ModelConfig

from packserve.config.confine import check_config_paths, check_model_name, confined_path
from packserve.errors import ConfigError, InvalidArgumentError


@pytest.mark.parametrize("name", ["simple", "resnet-50_v1.5", "модель", "a" * 255])
def test_plain_folder_names_are_fine(name: str) -> None:
    check_model_name(name)


@pytest.mark.parametrize(
    "name,reason",
    [("", "empty"), ("a" * 256, "255"), ("../x", "starts with '.'"), ("a/b", "'/'"), ("a\\b", "'\\\\\\\\'"),
     (".hidden", "starts with '.'"), ("a\nb", "'\\\\n'"), ("a\x00", "'\\\\x00'")],
)  # fmt: skip
def test_names_that_are_not_one_folder_are_invalid(name: str, reason: str) -> None:
    with pytest.raises(InvalidArgumentError, match=reason):
        check_model_name(name)


def test_paths_must_stay_inside_the_model_folder(tmp_path: Path) -> None:
    model = tmp_path / "m"
    (model / "1").mkdir(parents=True)
    (tmp_path / "outside.py").write_text("")
    os.symlink(tmp_path / "outside.py", model / "1" / "link.py")
    assert confined_path(model, model / "1", "model.py", "f") == (model / "1" / "model.py").resolve()
    for bad, reason in [("/etc/passwd", "absolute"), ("../../outside.py", "'..'"), ("link.py", "outside")]:
        with pytest.raises(ConfigError, match=reason):
            confined_path(model, model / "1", bad, "default_model_filename")


def test_config_fields_are_checked(tmp_path: Path) -> None:
    model = tmp_path / "m"
    (model / "1").mkdir(parents=True)
    config = ModelConfig(name="m", default_model_filename="model.py")
    check_config_paths(config, model, [1])
    config.output.add(name="OUT", label_filename="/etc/hosts")
    with pytest.raises(ConfigError, match="label_filename '/etc/hosts' is an absolute path"):
        check_config_paths(config, model, [1])
