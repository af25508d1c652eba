#!/usr/bin/env bash
# Set-up on a fresh machine: adaptinf and everything it needs, from the package
# registries only. torch is pinned (2.13.0, the CPU build) through the "build" extra:
# an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e ".[build,calib,test]"
