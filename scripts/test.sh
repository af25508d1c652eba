#!/usr/bin/env bash
# The test command: set up (scripts/setup.sh, into .venv), then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${ADAPTINF_VENV:-.venv}/bin/python" -m pytest -q "$@"
