#!/usr/bin/env bash
# The main job: set up (scripts/setup.sh, into .venv), then run the end-to-end demo on the
# shipped 224x224 bundle: paper 004's fixed 3G / 4G / Wi-Fi uplinks plus a 4-second window of
# each shipped synthetic trace (traces/), at 5 fps: `adaptinf demo`'s defaults. It writes every
# frame to out/demo.json and the plot to out/demo.png.
# With ADAPTINF_TRACES=DIR holding the recorded Mahimahi traces (e.g. ../shared/traces), their
# windows replace the synthetic ones. Arguments, if any, go to `adaptinf demo` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ $# -eq 0 ]; then
    mkdir -p out
    set -- --json out/demo.json --plot out/demo.png
    if [ -n "${ADAPTINF_TRACES:-}" ]; then
        T=$ADAPTINF_TRACES
        # 4 s windows where the capacity moves: a 3G drop (1.4 -> 0.3 -> 1.0 Mbit/s), an LTE rise (1.9 -> 12)
        set -- "$@" --uplink-trace "$T/TMobile-UMTS-driving.up:17-21" --uplink-trace "$T/Verizon-LTE-short.up:16-20"
    fi
fi
exec "${ADAPTINF_VENV:-.venv}/bin/python" -m adaptinf demo "$@"
