#!/usr/bin/env bash
# Checks and measures wgquant on a GPU machine, from the folder scripts/gpu-bundle.sh builds (this
# script is copied into it). Needs no Rust, network or model files: the models it times are
# random-weight stand-ins it writes on the spot.
#
#   gpu-bundle/gpu-check.sh OUT_DIR             the real run: stops unless the adapter is a GPU
#   gpu-bundle/gpu-check.sh OUT_DIR --dry-run   small shapes on any adapter (lavapipe in CI)
#
# Each step runs under its own timeout and writes OUT_DIR/NN-step.log as it goes; OUT_DIR/summary
# lists every step with its exit status. The script fails if any step failed or left no output.
set -uo pipefail
bundle="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: gpu-check.sh OUT_DIR [--dry-run]}"
dry=0
if [ "${2:-}" = "--dry-run" ]; then dry=1; fi
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$bundle"
: >"$out/summary"
started=$(date +%s)

# The Vulkan loader and the GL dispatch libraries NVIDIA's Vulkan driver needs, where the machine
# lacks them (the driver itself is the machine's own). Not on a dry run: that machine has its own.
if [ "$dry" = 0 ] && ! grep -q 'libGLdispatch.so.0' < <(ldconfig -p); then
    for deb in debs/*.deb; do dpkg -x "$deb" /; done
    ldconfig
fi
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
# Stand-ins are written to memory when it is large enough, else next to the bundle.
standins="${TMPDIR:-/tmp}/wgquant-standins"
mkdir -p "$standins"

failed=0
# step NAME SECONDS COMMAND...: runs COMMAND with its output in OUT/NAME.log.
step() {
    local name="$1" limit="$2"
    shift 2
    local t0=$(date +%s)
    echo "== $name (limit ${limit} s)"
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    local took=$(( $(date +%s) - t0 ))
    echo "$name rc=$rc ${took}s" | tee -a "$out/summary"
    tail -n 40 "$out/$name.log"
    if [ "$rc" != 0 ] || [ ! -s "$out/$name.log" ]; then failed=1; fi
    return "$rc"
}

# 1. The adapter, its driver, limits and features, and the kernel profile wgquant picks.
{
    date -u +%FT%TZ
    uname -a
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
} >"$out/00-machine.log" 2>&1
if ! step 01-info 60 bin/bench-kernels --info; then
    echo "no usable adapter: stopping" | tee -a "$out/summary"
    exit 1
fi
if [ "$dry" = 0 ] && grep -q 'type Cpu' "$out/01-info.log"; then
    echo "the adapter is a CPU device, not a GPU: stopping" | tee -a "$out/summary"
    exit 1
fi

# 2. Correctness with the kernels a GPU takes: every format, split bindings, attention, the
#    llama and qwen2 forward passes against the CPU reference (the default model's file is not
#    in the bundle, so its tests are skipped by name).
if [ "$dry" = 1 ]; then
    # The suites ran in full under `cargo test` already; here the dry run proves the step works.
    step 02-test-kernels 300 bin/test-kernels attention views_with_offsets --skip default_model
else
    step 02-test-kernels 150 bin/test-kernels --skip default_model
fi
step 03-test-small-models 120 bin/test-small_models

# 3. Kernels: copy and streaming-read bandwidth, every format's matvec on cold 7B and Gemma
#    shapes, prompt matmul GFLOP/s, host and device microseconds per small dispatch.
if [ "$dry" = 1 ]; then
    step 04-bench-kernels 600 bin/bench-kernels --quick
else
    step 04-bench-kernels 150 bin/bench-kernels
    # Which matvec and matmul shapes suit this device (on a matrix larger than its L2).
    step 04-tune-matvec 60 bin/bench-kernels --tune Q4_0 Q8_0 Q4_K Q6_K --shape 65536x4096
    step 04-tune-matvec-unchecked 60 env WGQUANT_SHADER_CHECKS=0 bin/bench-kernels --tune Q4_0 Q8_0 Q4_K Q6_K --shape 65536x4096
    step 04-tune-matmul 60 bin/bench-kernels --tune-mm Q4_0 Q8_0 Q4_K Q6_K
fi

# 4. Whole models, llama-bench style: pp512, tg128, load time, first-token latency, host time per
#    decode step, decode against the bandwidth bound; decode deep in a long context (Mistral);
#    the per-kernel profile of a decode step (a separate, profiled run).
if [ "$dry" = 1 ]; then
    models=(llama-tiny:Q4_K_M llama-tiny:Q8_0)
    pp=(-p 32 -n 8 -r 1)
    deep=(llama-tiny:Q4_K_M -d 64,256)
    profiled=llama-tiny:Q4_K_M
else
    models=(llama2-7b:Q4_K_M llama2-7b:Q4_0 llama2-7b:Q8_0 llama2-7b:Q6_K llama3-8b:Q4_K_M)
    pp=(-p 512 -n 128 -r 2)
    deep=(mistral-7b:Q4_K_M -d 4096,16384)
    profiled=llama2-7b:Q4_K_M
fi
i=5
for m in "${models[@]}"; do
    step "$(printf %02d $i)-speed-${m/:/-}" 90 bin/bench-speed --stand-in "$m" --stand-in-dir "$standins" "${pp[@]}"
    i=$((i + 1))
done
step "$(printf %02d $i)-speed-deep-${deep[0]/:/-}" 150 bin/bench-speed --stand-in "${deep[0]}" --stand-in-dir "$standins" "${pp[@]:0:4}" -r 1 "${deep[@]:1}"
i=$((i + 1))
WGQUANT_PROFILE=1 step "$(printf %02d $i)-profile-${profiled/:/-}" 90 bin/bench-speed --stand-in "$profiled" --stand-in-dir "$standins" -p 16 -n 32 -r 1
i=$((i + 1))
# The same model with wgpu's runtime bounds checks off (on by default on GPUs).
WGQUANT_SHADER_CHECKS=0 step "$(printf %02d $i)-unchecked-${profiled/:/-}" 90 bin/bench-speed --stand-in "$profiled" --stand-in-dir "$standins" "${pp[@]}"
i=$((i + 1))
# Decode on the integer matvec (off by default until measured here), and its kernel profile.
WGQUANT_INT_MATVEC=1 step "$(printf %02d $i)-int8-${profiled/:/-}" 90 bin/bench-speed --stand-in "$profiled" --stand-in-dir "$standins" "${pp[@]}"
i=$((i + 1))
WGQUANT_INT_MATVEC=1 WGQUANT_PROFILE=1 step "$(printf %02d $i)-int8-profile-${profiled/:/-}" 90 bin/bench-speed --stand-in "$profiled" --stand-in-dir "$standins" -p 16 -n 32 -r 1

# 5. llama.cpp is not in the bundle (yet): on the GPU, decode is measured against its bandwidth
#    bound; the side-by-side comparison runs where llama.cpp is built (scripts/compare-llamacpp.sh).

# Every step must have left its log with the figures it exists for.
# (grep reads the files itself: under pipefail, `cat | grep -q` fails when grep stops reading early.)
for want in '01-info.log:profile: ' '02-test-kernels.log:test result: ok' '03-test-small-models.log:test result: ok' \
    '04-bench-kernels.log:streaming read' '04-bench-kernels.log:Q4_K ' "-speed-:| tg"; do
    file="${want%%:*}" text="${want#*:}"
    if ! grep -qs -- "$text" "$out"/*"$file"*; then
        echo "missing output: no '$text' in $file" | tee -a "$out/summary"
        failed=1
    fi
done
echo "total $(( $(date +%s) - started ))s, failed=$failed" | tee -a "$out/summary"
exit "$failed"
