#!/usr/bin/env bash
# Runs the test suite (CPU only, a few minutes), one pytest-xdist worker per core, each
# test file on one worker (its module fixtures made once). Arguments go to pytest; `-n 0`
# runs it in this one process (for -x, --pdb or one test).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -n auto --dist loadfile "$@"
