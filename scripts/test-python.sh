#!/usr/bin/env bash
# The Python side of the tests: a virtual environment in target/py-venv with OpenAI's client, which
# tests/serve.rs drives `wgquant serve` with. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/py-venv
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import openai" 2>/dev/null; then
    exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" 2>/dev/null; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "installing python3-venv ..."
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
mkdir -p target
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "openai>=1.40"
echo "Python client ready: $venv"
