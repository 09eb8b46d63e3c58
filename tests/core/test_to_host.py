"""`messages.to_host`: the one torch-to-host conversion the engine, backends and front ends share."""

from __future__ import annotations

import numpy as np
import pytest

from packserve.messages import to_host


def test_numpy_array_is_returned_as_is() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert to_host(array) is array


def test_torch_tensor_is_detached_and_copied_to_a_numpy_array() -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.arange(6, dtype=torch.float32, requires_grad=True).reshape(2, 3) * 2
    host = to_host(tensor)
    assert isinstance(host, np.ndarray)
    np.testing.assert_array_equal(host, np.arange(6, dtype=np.float32).reshape(2, 3) * 2)


def test_other_sequences_go_through_asarray() -> None:
    np.testing.assert_array_equal(to_host([[1, 2], [3, 4]]), np.array([[1, 2], [3, 4]]))
