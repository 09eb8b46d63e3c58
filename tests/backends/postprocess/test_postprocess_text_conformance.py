"""Text post-processing added for rapidocr conformance (issue 11): the score filter, rapidocr's
minimum box side in original pixels, and CTC decoding of zero lines of any width."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from packserve.backends.postprocess.op import OpContext
from packserve.backends.postprocess.text import CtcDecodeOp, DbTextBoxesOp, TextFilterOp
from packserve.errors import InvalidArgumentError

MakeContext = Callable[..., OpContext]  # the conftest fixture's type


def test_text_filter_keeps_lines_scored_at_least_min_score(make_context: MakeContext) -> None:
    texts = np.array([b"good", b"#@!", b"edge"], dtype=object)
    scores = np.array([0.9, 0.2, 0.5], np.float32)
    quads = np.arange(24, dtype=np.float32).reshape(3, 8)
    out = TextFilterOp(make_context({})).run({"TEXT": texts, "SCORES": scores, "QUADS": quads})
    assert out["TEXT"].tolist() == [b"good", b"edge"] and out["SCORES"].tolist() == pytest.approx([0.9, 0.5])
    assert out["QUADS"].tolist() == quads[[0, 2]].tolist()
    strict = TextFilterOp(make_context({"min_score": "0.95"})).run(
        {"TEXT": texts, "SCORES": scores, "QUADS": quads}
    )
    assert strict["TEXT"].shape == (0,) and strict["QUADS"].shape == (0, 8)
    with pytest.raises(InvalidArgumentError, match="differ"):
        TextFilterOp(make_context({})).run({"TEXT": texts[:2], "SCORES": scores, "QUADS": quads})


def test_min_original_size_drops_specks_of_an_upscaled_image(make_context: MakeContext) -> None:
    probability = np.zeros((1, 1, 64, 64), np.float32)
    probability[0, 0, 10:20, 10:50] = 0.9
    # A 10x upscaled 6x6 thumbnail: the 60 px line is 6 x 2.4 px (incl. unclip) in the original.
    transform = np.array([10, 10, 0, 0, 6.4, 6.4], np.float32)
    kept = DbTextBoxesOp(make_context({})).run({"PROB_MAP": probability, "TRANSFORM": transform})
    dropped = DbTextBoxesOp(make_context({"min_original_size": "3"})).run(
        {"PROB_MAP": probability, "TRANSFORM": transform}
    )
    assert len(kept["QUADS"]) == 1 and dropped["QUADS"].shape == (0, 8) and dropped["SCORES"].shape == (0,)
    same = np.array([1, 1, 0, 0, 64, 64], np.float32)
    assert (
        len(
            DbTextBoxesOp(make_context({"min_original_size": "3"})).run(
                {"PROB_MAP": probability, "TRANSFORM": same}
            )["QUADS"]
        )
        == 1
    )


def test_ctc_decode_of_no_lines_of_variable_width(make_context: MakeContext, tmp_path: Path) -> None:
    (tmp_path / "dict.txt").write_text("a\nb\n", encoding="utf-8")
    op = CtcDecodeOp(make_context({"dictionary": "dict.txt"}))
    out = op.run({"PROBS": np.zeros((0, 0, 4), np.float32)})
    assert out["TEXT"].shape == (0,) and out["CONFIDENCES"].shape == (0,)
    wide = np.zeros((2, 300, 4), np.float32)
    wide[:, :, 0] = 1
    wide[0, 100, :] = (0, 1, 0, 0)
    assert op.run({"PROBS": wide})["TEXT"].tolist() == [b"a", b""]
