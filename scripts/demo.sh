#!/usr/bin/env bash
# README command 1: set up, build the demo model repository, serve it, send sample images through
# the vision pipeline and print what was found and the throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[demo]"
bash scripts/install_demo_weights.sh
exec .venv/bin/packserve demo "$@"
