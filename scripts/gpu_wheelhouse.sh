#!/usr/bin/env bash
# Build the wheelhouse that carries packserve to a GPU machine that cannot download anything.
#
#   bash scripts/gpu_wheelhouse.sh [OUT]        (default OUT: .gpu_wheelhouse, ignored by git)
#
# The GPU machine (see bench/README.md "GPU check") has Python 3.12 with torch 2.11 (CUDA 13),
# torchvision 0.26, numpy 2.5, grpcio, protobuf, onnx, onnxruntime 1.30, opencv-python-headless,
# pillow, nvidia-ml-py, uvloop, typer, rich, pyyaml, psutil, prometheus-client, requests and
# matplotlib. This script fetches what packserve needs beyond that, as manylinux x86-64 wheels for
# CPython 3.12, each pinned (to the versions the dev venv tests) and listed here (`--no-deps`: nothing else comes along):
#   - packserve itself (built from this checkout);
#   - tritonclient 2.51 (the model config / gRPC protos packserve reads, and perf_analyzer 2.51),
#     with perf_analyzer's own libraries: libcudart.so.12 (nvidia-cuda-runtime-cu12) and
#     libb64.so.0d (Debian libb64-0d, copied into OUT/lib);
#   - the HTTP front end's parser and JSON (httptools, orjson), the JPEG header reader (simplejpeg),
#     gRPC health (grpcio-health-checking), tritonclient.http for `packserve profile`'s served
#     measurement (gevent, greenlet, zope.event, zope.interface, geventhttpclient, brotli,
#     python-rapidjson) and the planner's simulator (simpy).
# Left out: ortools (24 MiB, the placement solver of `packserve plan`): with it the wheelhouse
# would pass the 40 MiB cap. The check profiles on the GPU and plans from that profile here
# (`python -m bench.gpu_check --plan-only OUT`) when ortools is missing there.
# Installed there with:
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site OUT/*.whl
# The script fails when OUT holds more than 40 MiB.
# Read by tests/bench/test_gpu_wheelhouse_list.py, which checks that these and the wheels below
# cover packserve's dependencies:
# gpu-machine-has: numpy onnxruntime onnx protobuf grpcio uvloop prometheus-client psutil typer rich pyyaml opencv-python-headless pillow torch torchvision nvidia-ml-py matplotlib requests
# left-out: ortools
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.gpu_wheelhouse}"
limit_mib=40
python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  if [ -x .venv/bin/python ]; then python_bin=.venv/bin/python; else python_bin=python3; fi
fi

wheels=(
  "tritonclient==2.51.0"
  "nvidia-cuda-runtime-cu12==12.4.127"
  "httptools==0.9.0"
  "orjson==3.13.0"
  "simplejpeg==1.9.0"
  "grpcio-health-checking==1.62.3"
  "hpack==4.2.0"  # the native gRPC transport's header compression
  "gevent==26.9.0"
  "greenlet==3.5.6"
  "zope.event==6.2"
  "zope.interface==8.7"
  "geventhttpclient==2.3.9"  # tritonclient asks <=2.0.2, which has no cp312 wheel
  "brotli==1.2.1"
  "python-rapidjson==1.25"
  "simpy==4.1.2"
)

rm -rf "$out"
mkdir -p "$out/lib"
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux_2_5 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
"$python_bin" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --abi cp312 --abi abi3 --abi none "${platforms[@]}" -d "$out" "${wheels[@]}"
"$python_bin" -m pip wheel -q --no-deps -w "$out" .

# perf_analyzer links libb64.so.0d: the Debian package's library, unpacked without installing it.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
if (cd "$scratch" && apt-get download libb64-0d >/dev/null 2>&1); then
  dpkg-deb -x "$scratch"/libb64-0d_*.deb "$scratch/root"
  cp -L "$(find "$scratch/root" -name 'libb64.so.0d' | head -1)" "$out/lib/"
elif [ -e /usr/lib/x86_64-linux-gnu/libb64.so.0d ]; then
  cp -L /usr/lib/x86_64-linux-gnu/libb64.so.0d "$out/lib/"
else
  echo "error: libb64.so.0d not found: apt-get download libb64-0d failed and it is not installed" >&2
  exit 1
fi

expected=$((${#wheels[@]} + 1))
found=$(find "$out" -maxdepth 1 -name '*.whl' | wc -l)
if [ "$found" -ne "$expected" ]; then
  echo "error: expected $expected wheels in $out, found $found" >&2
  exit 1
fi
size_kib=$(du -sk "$out" | cut -f1)
echo "wheelhouse $out: $found wheels + lib/libb64.so.0d, $((size_kib / 1024)) MiB (${size_kib} KiB; cap ${limit_mib} MiB)"
if [ "$size_kib" -gt $((limit_mib * 1024)) ]; then
  echo "error: the wheelhouse is over ${limit_mib} MiB" >&2
  exit 1
fi
