#!/usr/bin/env bash
# Deblurs the bundled example (configs/quickstart.yaml) with the fast method (configs/fast.yaml)
# and prints where the result is.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m lightning_deblur fit --config configs/fast.yaml --config configs/quickstart.yaml "$@"
