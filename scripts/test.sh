#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up (Vulkan driver, default models, the Python client
# the server tests use), run `cargo test`, the web page's tests in headless Chromium
# (scripts/test-web.sh), then dry-run the GPU check (scripts/gpu-bundle.sh, scripts/gpu-check.sh) on small shapes, so
# the script that measures a real GPU cannot rot between the rare runs on one.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/test-python.sh
cargo test
./scripts/test-web.sh
./scripts/gpu-bundle.sh --dev
rm -rf gpu-check-out
./gpu-bundle/gpu-check.sh gpu-check-out --dry-run
