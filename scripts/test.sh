#!/usr/bin/env bash
# Runs the test suite (CPU only, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
