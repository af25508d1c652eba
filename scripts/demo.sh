#!/usr/bin/env bash
# The main job: set up (scripts/setup.sh, into .venv), then run the end-to-end demo on the
# shipped 224x224 bundle: paper 004's fixed 3G / 4G / Wi-Fi uplinks, plus a short window of
# each recorded cellular trace when they are present (../shared/traces, or $ADAPTINF_TRACES).
# Arguments, if any, go to `adaptinf demo` instead of these defaults (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -eq 0 ]; then
    TRACES=${ADAPTINF_TRACES:-../shared/traces}
    # 5 fps: at 10 fps the 100 ms device is at utilisation 1.0 and any hiccup leaves a
    # queue that never drains within a run (docs/demo.md, the long runs)
    set -- --seconds 4 --fps 5
    if [ -f "$TRACES/TMobile-UMTS-driving.up" ] && [ -f "$TRACES/Verizon-LTE-short.up" ]; then
        # 4 s windows where the capacity moves: a 3G drop (1.4 -> 0.3 -> 1.0 Mbit/s), an LTE rise (1.9 -> 12)
        set -- "$@" --uplink-trace "$TRACES/TMobile-UMTS-driving.up:17-21" \
                    --uplink-trace "$TRACES/Verizon-LTE-short.up:16-20"
    else
        echo "no recorded traces at $TRACES: running the fixed links only (set ADAPTINF_TRACES)"
    fi
fi
exec "${ADAPTINF_VENV:-.venv}/bin/python" -m adaptinf demo "$@"
