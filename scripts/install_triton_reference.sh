#!/usr/bin/env bash
# Install the reference Triton Inference Server 2.51 (CPU, python backend only) used by the
# differential tests in tests/differential/. It ships inside the PyPI package nvidia-pytriton==0.7.0;
# we install it into its own virtualenv under .tools/ so it never touches the project's .venv.
#
# The python-backend stub embeds the *system* Python and ignores PYTHONPATH, so numpy must be
# importable by /usr/bin/python3: that is what the Debian package python3-numpy provides.
#
# Usage: scripts/install_triton_reference.sh            (idempotent; prints the tritonserver path)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${PACKSERVE_TOOLS_DIR:-${repo_root}/.tools}"
venv_dir="${tools_dir}/triton-venv"
pytriton_version="0.7.0"

if ! /usr/bin/python3 -c "import numpy" >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo_cmd=""
        if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
        ${sudo_cmd} apt-get update -qq
        ${sudo_cmd} apt-get install -y -qq python3-numpy
    else
        echo "error: /usr/bin/python3 cannot import numpy and apt-get is not available" >&2
        exit 1
    fi
fi

mkdir -p "${tools_dir}"
if [ ! -x "${venv_dir}/bin/python" ]; then
    python3 -m venv "${venv_dir}"
fi
if ! "${venv_dir}/bin/python" -c "import pytriton" >/dev/null 2>&1; then
    "${venv_dir}/bin/pip" install --quiet "nvidia-pytriton==${pytriton_version}"
fi

server="$("${venv_dir}/bin/python" - <<'PY'
import pathlib
import pytriton

print(pathlib.Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver")
PY
)"
if [ ! -x "${server}" ]; then
    echo "error: tritonserver not found at ${server}" >&2
    exit 1
fi
# The python backend looks for its stub next to libtriton_python.so; pytriton keeps one stub per
# Python version aside and copies the right one at run time. We serve with the system Python, so
# install the stub built for its version.
system_python_version="$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')"
server_root="$(dirname "$(dirname "${server}")")"
stub="${server_root}/python_backend_stubs/${system_python_version}/triton_python_backend_stub"
if [ ! -x "${stub}" ]; then
    echo "error: no python backend stub for the system Python ${system_python_version} in ${server_root}" >&2
    exit 1
fi
cp -f "${stub}" "${server_root}/backends/python/triton_python_backend_stub"

# A stable path the tests look for first.
ln -sfn "$(dirname "$(dirname "${server}")")" "${tools_dir}/tritonserver"
echo "${tools_dir}/tritonserver/bin/tritonserver"
