"""model_warmup: samples run on every instance before READY; a failing sample fails the load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from packserve.core.engine import Engine, EngineOptions
from tests.fakes.double_backend import MODELS, register_fake_backend, write_double_model
from tests.fakes.registry import BackendRegistry


@pytest.fixture(autouse=True)
def _fake_backend(backend_registry: BackendRegistry) -> None:
    register_fake_backend(backend_registry)
    MODELS.clear()


def add_warmup(root: Path, name: str, text: str) -> None:
    config = root / name / "config.pbtxt"
    config.write_text(config.read_text() + text)


async def start(root: Path) -> Engine:
    return await Engine.start(EngineOptions(model_repository=root))


async def test_samples_run_on_every_instance_before_ready(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double", count=2)
    (tmp_path / "double" / "warmup").mkdir()
    (tmp_path / "double" / "warmup" / "x.bin").write_bytes(np.arange(4, dtype="<f4").tobytes())
    add_warmup(
        tmp_path,
        "double",
        """
model_warmup [
  { name: "zeros" batch_size: 3 count: 2 inputs { key: "X" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } },
  { name: "random" batch_size: 1 inputs { key: "X" value: { data_type: TYPE_FP32 dims: [ 4 ] random_data: true } } },
  { name: "file" batch_size: 2 inputs { key: "X" value: { data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "x.bin" } } }
]
""",
    )
    engine = await start(tmp_path)
    try:
        assert engine.model_ready("double")
        # Each sample on each of the 2 instances: 2 x batch 3, then batch 1, then batch 2.
        assert MODELS[-1].batch_sizes == [3, 3, 3, 3, 1, 1, 2, 2]
        # Triton counts warmup in the statistics: rows as inferences, runs as executions.
        stats = engine.model_statistics("double")[0]
        assert (stats.inference_count, stats.execution_count) == (2 * (2 * 3 + 1 + 2), 8)
    finally:
        await engine.shutdown()


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        # The fake model refuses negative inputs: the model's own error fails the load.
        (
            'inputs { key: "X" value: { data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "neg.bin" } }',
            "negative input",
        ),
        ('inputs { key: "X" value: { data_type: TYPE_FP32 dims: [ 5 ] zero_data: true } }', "expected shape"),
        (
            'inputs { key: "X" value: { data_type: TYPE_INT32 dims: [ 4 ] zero_data: true } }',
            "expected datatype",
        ),
        (
            'inputs { key: "X" value: { data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "nope.bin" } }',
            "nope.bin",
        ),
        (
            'inputs { key: "X" value: { data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "short.bin" } }',
            "holds 4 bytes",
        ),
    ],
)
async def test_a_failing_sample_fails_the_load_with_its_reason(
    tmp_path: Path, sample: str, reason: str
) -> None:
    write_double_model(tmp_path, "double")
    (tmp_path / "double" / "warmup").mkdir()
    (tmp_path / "double" / "warmup" / "neg.bin").write_bytes(np.full(4, -1, dtype="<f4").tobytes())
    (tmp_path / "double" / "warmup" / "short.bin").write_bytes(b"\x00" * 4)
    add_warmup(tmp_path, "double", f'model_warmup [ {{ name: "s" batch_size: 1 {sample} }} ]')
    engine = await start(tmp_path)
    try:
        entry = {e.name: e for e in engine.repository_index()}["double"]
        assert entry.state == "UNAVAILABLE"
        assert "warmup sample 's'" in entry.reason and reason in entry.reason, entry.reason
    finally:
        await engine.shutdown()


async def test_batch_size_beyond_max_batch_size_fails(tmp_path: Path) -> None:
    write_double_model(tmp_path, "double", max_batch=2)
    add_warmup(
        tmp_path,
        "double",
        'model_warmup [ { name: "big" batch_size: 3 inputs { key: "X" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]',
    )
    engine = await start(tmp_path)
    try:
        reason = {e.name: e for e in engine.repository_index()}["double"].reason
        assert "batch_size must be 1..2, got 3" in reason
    finally:
        await engine.shutdown()
