#!/usr/bin/env bash
# Set-up on a fresh machine: adaptinf and everything it needs, from the package
# registries only. torch is pinned (2.13.0, the CPU build) through the "build" extra:
# an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
# The MCU firmware's toolchain and its emulator (Debian): arm-none-eabi-gcc with newlib, QEMU.
if ! command -v arm-none-eabi-gcc >/dev/null || ! command -v qemu-system-arm >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        make gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm >/dev/null
fi
python3 -m pip install --quiet --disable-pip-version-check -e ".[build,calib,test]"
