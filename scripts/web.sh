#!/usr/bin/env bash
# Builds the web page (web/): the wgquant-web crate compiled to WebAssembly, with wasm-bindgen's
# JavaScript glue, into web/pkg/. Installs what is missing: the wasm32-unknown-unknown target,
# and the wasm-bindgen-cli whose version web/Cargo.toml pins.
#
#   scripts/web.sh              build
#   scripts/web.sh --serve [P]  build, then serve the repository on http://127.0.0.1:P (8000)
#                               and print the page's address (its default model is under models/)
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^wasm-bindgen = "=\(.*\)"$/\1/p' web/Cargo.toml)
grep -qx wasm32-unknown-unknown < <(rustup target list --installed) || rustup target add wasm32-unknown-unknown
if [ "$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2)" != "$version" ]; then
    echo "installing wasm-bindgen-cli $version" >&2
    cargo install -q wasm-bindgen-cli --version "$version"
fi
cargo build -q -p wgquant-web --target wasm32-unknown-unknown --profile web
wasm-bindgen --target web --no-typescript --out-dir web/pkg target/wasm32-unknown-unknown/web/wgquant_web.wasm
echo "built web/pkg ($(du -h web/pkg/wgquant_web_bg.wasm | cut -f1) of WebAssembly)" >&2

if [ "${1:-}" = "--serve" ]; then
    port=${2:-8000}
    echo "open http://127.0.0.1:$port/web/ in a browser with WebGPU (Ctrl-C stops the server)" >&2
    exec python3 -m http.server --bind 127.0.0.1 "$port"
fi
