#!/usr/bin/env bash
# The test command: set up, then run the whole suite (about 4 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m pytest -q "$@"
