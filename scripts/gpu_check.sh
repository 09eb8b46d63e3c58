#!/usr/bin/env bash
# The GPU proof kit, one command: measures the seed's GPU claims and writes OUT/report.json and
# OUT/report.md (bench/gpu_check/, bench/README.md "GPU check").
#
#   bash scripts/gpu_check.sh [--device cuda:0] [--perf-analyzer PATH] OUT     on a GPU machine (< 8 min)
#   bash scripts/gpu_check.sh --device cpu --quick OUT                         the dry run (CI, seconds)
#
# Expects a Python with packserve importable (this checkout's .venv, or $PYTHON with packserve and
# the wheelhouse of scripts/gpu_wheelhouse.sh on its path), torch (torchvision for nvjpeg on a
# GPU), nvidia-ml-py for GPU busy % and perf_analyzer 2.51 ($PERF_ANALYZER, .tools/bin or PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m bench.gpu_check "$@"
