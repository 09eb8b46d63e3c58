#!/usr/bin/env bash
# README command 2 and CI: set up, lint, type-check, run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_dev.sh
echo "== ruff"; .venv/bin/ruff check packserve tests bench
echo "== mypy"; .venv/bin/mypy
echo "== import layering"; .venv/bin/lint-imports
echo "== pytest"; .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
# The full run (no arguments) also installs and tests on the oldest and newest supported Python.
if [ "$#" -eq 0 ]; then echo "== other Pythons"; bash scripts/test_pythons.sh; fi
