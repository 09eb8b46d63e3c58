from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from packserve.backends.postprocess.op import OpContext
from packserve.model_spec import ModelSpec, TensorSpec, VersionPolicy

MakeContext = Callable[..., OpContext]


@pytest.fixture
def make_context(tmp_path: Path) -> MakeContext:
    def make(
        parameters: Mapping[str, str],
        inputs: tuple[TensorSpec, ...] = (),
        outputs: tuple[TensorSpec, ...] = (),
        max_batch_size: int = 0,
    ) -> OpContext:
        spec = ModelSpec(
            name="post",
            platform="",
            backend="postprocess",
            max_batch_size=max_batch_size,
            inputs=inputs,
            outputs=outputs,
            dynamic_batching=None,
            instance_groups=(),
            version_policy=VersionPolicy(),
            default_model_filename="",
            parameters=dict(parameters),
        )
        return OpContext(spec=spec, version_dir=tmp_path)

    return make
