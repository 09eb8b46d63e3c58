#!/usr/bin/env bash
# Install packserve as a user would (`pip install ".[test]"`, no pins: numpy 2 and current protobuf
# where the Python allows) in a fresh virtualenv for the oldest and the newest supported Python,
# then run the serving test subset against that install.
#
# Pythons: PACKSERVE_TEST_PYTHONS (default "3.10 3.13"), looked up as pyenv's
# /root/.pyenv/versions/X.Y.*/bin/pythonX.Y, then pythonX.Y on PATH. A missing one fails the run
# unless PACKSERVE_ALLOW_MISSING_PYTHONS=1.
# The subset: config, core, front ends, metrics, CLI, the ONNX and python backends and two
# end-to-end modules (no torch, planning, demo or reference-server tests: those are the dev
# environment's). About 2-4 minutes per Python, most of it pip downloading wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

find_python() {
    local version="$1" candidate
    for candidate in "${PYENV_ROOT:-/root/.pyenv}"/versions/"$version".*/bin/python"$version"; do
        if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
    done
    command -v "python$version" 2>/dev/null || return 1
}

subset=(
    tests/cli tests/config tests/core tests/frontends/http tests/frontends/test_request_log.py
    tests/frontends/grpc/test_grpc_end_to_end.py tests/frontends/grpc/test_grpc_codec.py tests/metrics
    tests/backends/test_onnxruntime.py tests/backends/test_python_backend.py tests/backends/test_pb_utils.py
    tests/e2e/test_http_acceptance.py tests/e2e/test_triton_flags_served.py
)

for version in ${PACKSERVE_TEST_PYTHONS:-3.10 3.13}; do
    if ! python_bin="$(find_python "$version")"; then
        if [ "${PACKSERVE_ALLOW_MISSING_PYTHONS:-0}" = 1 ]; then
            echo "== Python $version: not found, skipped"; continue
        fi
        echo "error: no Python $version (pyenv or python$version on PATH)" >&2; exit 1
    fi
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    echo "== Python $version ($python_bin): pip install \".[test]\" into a fresh venv"
    "$python_bin" -m venv "$work/venv"
    "$work/venv/bin/python" -m pip install -q --upgrade pip
    "$work/venv/bin/python" -m pip install -q "$repo[test]"
    # From outside the tree, so that the import below finds the installed copy.
    (cd "$work" && "$work/venv/bin/python" -) <<'PY'
import importlib.metadata as m, sys
import packserve
assert "site-packages" in packserve.__file__, packserve.__file__  # the installed copy, not the tree
print("   ", sys.version.split()[0], *(f"{d} {m.version(d)}" for d in ("numpy", "protobuf", "tritonclient", "onnxruntime", "grpcio")))
PY
    # The installed packserve is tested, not the tree: the venv's pytest script (not `python -m`)
    # and no pythonpath keep the repository root off sys.path; only `tests` is put on it.
    mkdir "$work/path" && ln -s "$repo/tests" "$work/path/tests"
    (cd "$repo" && PYTHONPATH="$work/path" "$work/venv/bin/pytest" -q -p no:cacheprovider -o pythonpath= \
        -m "not slow and not triton" "${subset[@]}")
    rm -rf "$work"
    trap - EXIT
done
