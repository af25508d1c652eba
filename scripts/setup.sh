#!/usr/bin/env bash
# Set-up on a fresh machine: adaptinf and everything it needs, from the package
# registries only, into the project's own virtualenv (.venv, git-ignored). Nothing
# is installed into whichever interpreter happens to be first on PATH, so a package
# installed there by hand can never stand in for a missing declaration.
#
# torch is pinned (2.13.0, the CPU build) through the "build" extra: an unpinned
# torch would pull a multi-GB CUDA build.
#
#   ADAPTINF_VENV   where the virtualenv lives (default: .venv in the checkout)
#   ADAPTINF_FRESH=1  delete that virtualenv first and build it from nothing (CI does)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ADAPTINF_VENV:-.venv}

# The MCU firmware's toolchain and its emulator (Debian): arm-none-eabi-gcc with newlib, QEMU;
# and the C client's build (clients/c): a C compiler, pkg-config, libzmq and msgpack-c.
if ! command -v arm-none-eabi-gcc >/dev/null || ! command -v qemu-system-arm >/dev/null \
        || ! pkg-config --exists libzmq msgpack 2>/dev/null || ! command -v cc >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        make gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm \
        gcc libc6-dev pkg-config libzmq3-dev libmsgpack-dev >/dev/null
fi

if [ "${ADAPTINF_FRESH:-0}" = 1 ]; then
    rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[build,calib,demo,test,video]"
