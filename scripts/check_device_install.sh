#!/usr/bin/env bash
# The device install, as docs/deployment.md describes it: `pip install .` with no extras in
# a fresh virtualenv (no torch, no onnx, no matplotlib), then scripts/device_install_check.py
# imports every run-time module and serves a frame through adaptinfd with no cloud.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(mktemp -d /tmp/adaptinf-device-venv.XXXXXX)
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check .
# run from outside the checkout so only the installed package can be imported
(cd "$VENV" && "$VENV/bin/python" "$OLDPWD/scripts/device_install_check.py" "$OLDPWD/bundles/glyphnet")
