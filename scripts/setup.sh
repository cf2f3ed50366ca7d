#!/usr/bin/env bash
# Creates ./.venv (once) and installs the project into it (again whenever pyproject.toml changes).
#
# torch: TORCH_SPEC (default torch==2.13.0) is installed first. On Linux, PyPI's wheel of
# that release is a CUDA build, so GPU machines get CUDA; machines that keep a CPU wheel
# of it locally use that. Set TORCH_INDEX_URL to pick another build (e.g. a CUDA version).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "Setting up .venv (one time) ..." >&2
    torch_args=("${TORCH_SPEC:-torch==2.13.0}")
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        torch_args+=(--index-url "$TORCH_INDEX_URL")
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "${torch_args[@]}"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
    rm -f .venv/.installed-*
    touch "$stamp"
fi
