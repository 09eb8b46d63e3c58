"""Helpers for the web console's browser tests: Playwright driving Debian's `chromium` (never a
downloaded browser), a model whose outputs hold markup, and a bounded background load.

Screenshots go to $PACKSERVE_CONSOLE_SCREENSHOTS (default /tmp/packserve-console-screenshots).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import requests

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
SCREENSHOTS = Path(os.environ.get("PACKSERVE_CONSOLE_SCREENSHOTS", "/tmp/packserve-console-screenshots"))
# Strings a careless page would turn into elements: an <img> whose onerror runs, a <script>.
MARKUP_LABEL = '<img src="x" onerror="window.__pwned = 1">'
MARKUP_TEXT = "<script>window.__pwned = 2</script><b>bold</b>"
MARKUP_MODEL = "markup_echo"
BROKEN_MODEL = "broken_on_load"  # UNAVAILABLE, with markup in its reason
BROKEN_REASON = "<b>cannot start</b> on purpose"


def chromium_path() -> str | None:
    """$PACKSERVE_CHROMIUM, else Debian's chromium (scripts/setup_dev.sh installs it)."""
    configured = os.environ.get("PACKSERVE_CHROMIUM")
    if configured:
        return configured
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


MARKUP_CONFIG = f"""\
name: "{MARKUP_MODEL}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IMAGE" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [
  {{ name: "FACE_BOXES" data_type: TYPE_FP32 dims: [ 1, 4 ] }},
  {{ name: "TEXT_QUADS" data_type: TYPE_FP32 dims: [ 1, 8 ] }},
  {{ name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "CONTENT_LABELS" data_type: TYPE_STRING dims: [ 1 ] }},
  {{ name: "CONTENT_SCORES" data_type: TYPE_FP32 dims: [ 1 ] }}
]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
"""

MARKUP_MODEL_PY = f'''\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Answers any image with one box, one text quad and strings that hold HTML markup."""

    def execute(self, requests):
        responses = []
        for request in requests:
            outputs = [
                pb_utils.Tensor("FACE_BOXES", np.array([[10, 20, 110, 140]], dtype=np.float32)),
                pb_utils.Tensor("TEXT_QUADS", np.array([[20, 200, 300, 200, 300, 240, 20, 240]], dtype=np.float32)),
                pb_utils.Tensor("TEXT", np.array([{MARKUP_TEXT!r}.encode()], dtype=np.object_)),
                pb_utils.Tensor("CONTENT_LABELS", np.array([{MARKUP_LABEL!r}.encode()], dtype=np.object_)),
                pb_utils.Tensor("CONTENT_SCORES", np.array([0.5], dtype=np.float32)),
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
'''


BROKEN_MODEL_PY = f"""\
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError({BROKEN_REASON!r})

    def execute(self, requests):
        return []
"""


def add_console_models(repository: Path) -> None:
    """Add `markup_echo` (python backend, one BYTES input, markup in its strings) and
    `broken_on_load` (fails to load, markup in the reason) to a model repository."""
    models = (
        (MARKUP_MODEL, MARKUP_CONFIG, MARKUP_MODEL_PY),
        (BROKEN_MODEL, MARKUP_CONFIG.replace(MARKUP_MODEL, BROKEN_MODEL), BROKEN_MODEL_PY),
    )
    for name, config, source in models:
        (repository / name / "1").mkdir(parents=True, exist_ok=True)
        (repository / name / "config.pbtxt").write_text(config, encoding="utf-8")
        (repository / name / "1" / "model.py").write_text(source, encoding="utf-8")


class BackgroundLoad:
    """Posts one image to a pipeline in a loop on a few threads until stopped (or `limit_s`)."""

    def __init__(self, url: str, image: bytes, threads: int = 2, limit_s: float = 120.0) -> None:
        self._url = url
        self._image = image
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit_s
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self.sent = 0

    def _run(self) -> None:
        session = requests.Session()
        session.trust_env = False
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            reply = session.post(self._url, data=self._image, timeout=60)
            reply.raise_for_status()
            self.sent += 1

    def __enter__(self) -> BackgroundLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)
