#!/usr/bin/env bash
# The main job: set up (scripts/setup.sh, into .venv), then run the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${ADAPTINF_VENV:-.venv}/bin/python" -m adaptinf demo "$@"
