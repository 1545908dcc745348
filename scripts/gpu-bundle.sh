#!/usr/bin/env bash
# Builds gpu-bundle/: everything a GPU machine without Rust or network needs to check and measure
# wgquant (scripts/gpu-check.sh runs it there). It holds stripped binaries of the kernel and speed
# benchmarks and of the GPU test suites, the Vulkan loader's Debian package, and gpu-check.sh.
#
#   scripts/gpu-bundle.sh          release build, checked to stay under 64 MiB
#   scripts/gpu-bundle.sh --dev    the test profile's build (what `cargo test` already built): for
#                                  the dry run on lavapipe in CI
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
if [ "${1:-}" = "--dev" ]; then profile=dev; fi
out=gpu-bundle
limit_mib=64

# The test binaries are named by cargo with a hash: take their paths from its JSON messages.
targets=(--bench kernels --bench speed --test kernels --test small_models)
cargo build --profile "$profile" "${targets[@]}" --message-format=json-render-diagnostics >target/gpu-bundle.json
rm -rf "$out"
mkdir -p "$out/bin" "$out/debs" "$out/tests"
python3 - "$out/bin" target/gpu-bundle.json <<'PY'
import json, shutil, sys
dest, messages = sys.argv[1], open(sys.argv[2])
for line in messages:
    msg = json.loads(line)
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    kind = "bench" if msg["target"]["kind"] == ["bench"] else "test"
    shutil.copy(msg["executable"], f"{dest}/{kind}-{msg['target']['name']}")
PY
strip "$out"/bin/*
cp scripts/gpu-check.sh "$out/"
# The kernel tests read llama.cpp's golden blocks from tests/data, relative to where they run.
cp -r tests/data "$out/tests/"

# The Vulkan loader, and the GL vendor-neutral dispatch libraries NVIDIA's Vulkan driver (which
# lives in libGLX_nvidia) needs to initialise; the GPU machine brings the driver, not these.
loader_debs="libvulkan1 libglvnd0 libglx0 libgl1 libegl1 libopengl0 libgles2"
if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then apt-get update -qq; fi
(cd "$out/debs" && apt-get download -qq $loader_debs 2>/dev/null || { apt-get update -qq && apt-get download -qq $loader_debs; })

size_mib=$(( $(du -sb "$out" | cut -f1) >> 20 ))
ls -l "$out/bin" "$out/debs"
echo "gpu-bundle: ${size_mib} MiB"
if [ "$profile" = release ] && [ "$size_mib" -ge "$limit_mib" ]; then
    echo "gpu-bundle is ${size_mib} MiB, over the ${limit_mib} MiB a device run may carry" >&2
    exit 1
fi
