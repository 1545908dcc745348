#!/usr/bin/env bash
# The web page's tests in a real headless Chromium (web/tests/browser.test.mjs): installs what they
# need (Debian's Chromium; Node.js; playwright-core from npm, into web/tests/node_modules), builds
# the page (scripts/web.sh) and the native `wgquant` the chat test compares with, and runs them.
# Chromium's WebGPU here is SwiftShader, on the CPU. A screenshot of the page after a chat reply
# is left in web/tests/artifacts/chat.png. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} ..."
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
(cd web/tests && npm ci --no-audit --no-fund --silent)

./scripts/web.sh
cargo build -q --bin wgquant
cd web/tests
CHROMIUM="$(command -v chromium)" WGQUANT="$PWD/../../target/debug/wgquant" node --test browser.test.mjs
