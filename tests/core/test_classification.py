"""Triton's classification output format."""

from __future__ import annotations

import numpy as np
import pytest

from packserve.core.classification import classify
from packserve.errors import InvalidArgumentError


def test_top_classes_per_row_with_labels() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], dtype=np.float32)
    result = classify(scores, 2, ("cat", "dog", "bird"), batching=True)
    assert result.shape == (2, 2) and result.dtype == object
    assert result.tolist() == [
        [b"0.700000:1:dog", b"0.200000:2:bird"],
        [b"0.500000:0:cat", b"0.250000:1:dog"],  # a tie keeps the lower index first
    ]


def test_without_labels_or_batching() -> None:
    result = classify(np.array([3.5, -1.0, 9.25], dtype=np.float64), 5, (), batching=False)
    assert result.tolist() == [b"9.250000:2", b"3.500000:0", b"-1.000000:1"]


def test_integer_scores_print_as_integers() -> None:
    result = classify(np.array([[1, 9, 4]], dtype=np.int32), 1, ("a", "b"), batching=True)
    assert result.tolist() == [[b"9:1:b"]]
    big = np.array([[2**64 - 1, 0]], dtype=np.uint64)
    assert classify(big, 1, (), batching=True).tolist() == [[b"18446744073709551615:0"]]


def test_labels_shorter_than_classes_give_no_label() -> None:
    result = classify(np.array([[0.0, 1.0]], dtype=np.float32), 1, ("only",), batching=True)
    assert result.tolist() == [[b"1.000000:1"]]


def test_unsupported_types_and_counts() -> None:
    with pytest.raises(InvalidArgumentError, match="unsupported type"):
        classify(np.zeros((1, 3), np.float16), 1, (), batching=True)
    with pytest.raises(InvalidArgumentError, match="class_count must be at least 1"):
        classify(np.zeros((1, 3), np.float32), 0, (), batching=True)
