#!/usr/bin/env bash
# The main job: set up, then run the end-to-end demo (3G, 4G, Wi-Fi; under 2 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m adaptinf demo "$@"
