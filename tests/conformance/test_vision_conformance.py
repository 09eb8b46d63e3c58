"""The served `vision_stack` answers what each model package answers on the same image.

Every case (conformance_cases.py) goes once through the live server (POST
/v2/pipelines/vision_stack) and once through the packages' own entry points with default settings
(conformance_refs.py); each model's answer is compared by the rules of conformance_compare.py.
Cases whose reference run takes a minute on two cores (multi-megapixel OCR) run in the full table
only: `python tests/conformance/agreement_table.py` (docs/vision-stack.md, "Conformance").

Cases that failed before issue 11's fixes: portrait_2400 (landmarks: crops cut from the shrunk
decode at unmapped coordinates), banner_2400 (text: same), text_long_line (text: squeezed into
320 px), thumbnail_32 / thumbnail_64 (faces: blown up 20x into a "face"), group_1280_small_faces
(faces: 40 px faces lost at 640), astronaut_rgba (content: alpha dropped), every JPEG/WebP photo
(content: aspect-kept crop without the reference's JPEG round trip).
"""

from __future__ import annotations

import pytest

from tests.conformance.conformance_cases import by_name
from tests.conformance.conformance_compare import MODELS, Served, compare, serve
from tests.conformance.conformance_refs import Reference, reference
from tests.e2e.e2e_server import LiveServer

# The first test of a case runs the references, up to minutes for multi-megapixel images on a
# loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CI_CASES = (
    "astronaut_jpeg",
    "astronaut_progressive",
    "astronaut_webp",
    "astronaut_gray",
    "astronaut_cmyk",
    "astronaut_rgba",
    "astronaut_palette",
    *(f"exif_{o}" for o in range(1, 9)),
    "portrait_2400",
    "group_1280_small_faces",
    "thumbnail_32",
    "thumbnail_64",
    "text_page",
    "text_long_line",
    "banner_2400",
    "text_rot180",
)
# rapidocr is not run on these in CI (seconds each on a photo without text; the full table runs
# it): faces, landmarks, content and orientation are still compared.
NO_TEXT_REFERENCE = {"portrait_2400", *(f"exif_{o}" for o in range(2, 9))}
# (case, model) -> the documented reason the served answer differs (docs/vision-stack.md).
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    ("portrait_2400", "text"): "text detector at 640 px vs rapidocr's up to 2000 px: name tags too small",
    ("thumbnail_64", "text"): "served reads one character on a 64 px photo thumbnail; rapidocr reads none",
}

_answers: dict[str, tuple[Served, Reference]] = {}


def answers(server: LiveServer, name: str) -> tuple[Served, Reference]:
    if name not in _answers:
        case = by_name(name)
        _answers[name] = (
            serve(server.http_base, case.data),
            reference(case, text=name not in NO_TEXT_REFERENCE),
        )
    return _answers[name]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", CI_CASES)
def test_served_agrees_with_reference(
    vision_server: LiveServer, references_available: None, name: str, model: str
) -> None:
    if (name, model) in KNOWN_DIFFERENCES:
        pytest.skip(f"documented difference: {KNOWN_DIFFERENCES[name, model]}")
    if model == "text" and name in NO_TEXT_REFERENCE:
        pytest.skip("rapidocr not run on this case in CI (full table only)")
    served, ref = answers(vision_server, name)
    ok, detail = compare(served, ref)[model]
    note = ref.decode_note.get(model, "")
    assert ok, f"{name} / {model}: {detail}" + (f" (reference run on upright pixels: {note})" if note else "")
