"""The gpu_memory_budget parameter of torch models: parsing, the weights check and the per-device
ledger (its CUDA warm-up measurement runs in scripts/gpu_check.sh on a GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from packserve.backends.gpu_budget import BudgetLedger, parse_budget
from packserve.backends.pytorch import TorchModel
from packserve.errors import ConfigError, ModelLoadError
from tests.fakes.backends import model_context

torch = pytest.importorskip("torch")

LINEAR_CONFIG = """
name: "linear"
platform: "pytorch_libtorch"
max_batch_size: 4
input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 256 ] } ]
output [ { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 256 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
parameters { key: "gpu_memory_budget" value { string_value: "BUDGET" } }
"""
WEIGHTS = (256 * 256 + 256) * 4  # a 256x256 fp32 Linear and its bias


def linear_dir(tmp_path: Path, budget: str) -> Path:
    model_dir = tmp_path / "linear"
    (model_dir / "1").mkdir(parents=True)
    torch.jit.trace(torch.nn.Linear(256, 256), torch.zeros(1, 256)).save(str(model_dir / "1" / "model.pt"))
    (model_dir / "config.pbtxt").write_text(LINEAR_CONFIG.replace("BUDGET", budget))
    return model_dir


def test_budget_sizes_parse() -> None:
    assert parse_budget("m", {}) is None
    assert parse_budget("m", {"gpu_memory_budget": "512MiB"}) == 512 * 2**20
    assert parse_budget("m", {"gpu_memory_budget": "1.5GB"}) == 1_500_000_000
    assert parse_budget("m", {"gpu_memory_budget": "4096"}) == 4096
    for bad in ("lots", "0MiB", "-1GiB", "3 parsecs"):
        with pytest.raises(ConfigError, match="gpu_memory_budget"):
            parse_budget("m", {"gpu_memory_budget": bad})


def test_model_over_its_budget_is_refused_with_the_figures(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model 'linear': needs 257.0 KiB on cpu .* over its gpu_memory_budget of 100.0 KiB"):
        TorchModel(model_context(linear_dir(tmp_path, "100KiB")))


def test_model_within_its_budget_loads_and_reserves_it_until_closed(tmp_path: Path) -> None:
    from packserve.backends.gpu_budget import LEDGER

    model = TorchModel(model_context(linear_dir(tmp_path, "1MiB")))
    assert model.memory_need is not None and model.memory_need.weights_bytes == WEIGHTS
    assert LEDGER.reserved("cpu")["linear"] == 2**20
    model.close()
    assert "linear" not in LEDGER.reserved("cpu")


def test_ledger_refuses_a_budget_that_eats_into_another_models() -> None:
    ledger = BudgetLedger(device_total=lambda device: 10 * 2**30)
    first, second = object(), object()
    ledger.reserve("cuda:0", "detector", 6 * 2**30, first)
    with pytest.raises(ModelLoadError, match=r"'classifier': gpu_memory_budget 5.0 GiB does not fit on cuda:0: it has 10.0 GiB and 6.0 GiB is already reserved \('detector' 6.0 GiB\)"):
        ledger.reserve("cuda:0", "classifier", 5 * 2**30, second)
    ledger.reserve("cuda:0", "classifier", 4 * 2**30, second)
    # A reload of the detector replaces its own reservation, and the old copy's release keeps the new one.
    newer = object()
    ledger.reserve("cuda:0", "detector", 6 * 2**30, newer)
    ledger.release("cuda:0", "detector", first)
    assert ledger.reserved("cuda:0") == {"detector": 6 * 2**30, "classifier": 4 * 2**30}
    ledger.release("cuda:0", "detector", newer)
    assert ledger.reserved("cuda:0") == {"classifier": 4 * 2**30}
