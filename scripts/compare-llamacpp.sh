#!/usr/bin/env bash
# Prompt and decode speed of wgquant and of llama.cpp on this machine, in one run.
#
#   LLAMA_BENCH_VK=/path/to/vulkan/llama-bench LLAMA_BENCH_CPU=/path/to/cpu/llama-bench \
#       scripts/compare-llamacpp.sh [MODEL] [PROMPT_TOKENS] [DECODE_TOKENS] [REPS]
#
# llama.cpp is not part of this project: build its llama-bench yourself (a Vulkan build and a CPU
# build) and point the variables at them; either may be left unset to skip it. wgquant runs twice:
# on the GPU (the adapter it picks), and with every layer and the head on the CPU (`--ngl 0`). Run on a quiet
# machine. llama.cpp's Vulkan backend ignores CPU-type devices such as lavapipe unless
# GGML_VK_VISIBLE_DEVICES selects them; this script sets it to 0 unless it is already set.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/gemma-3-270m-q4_k_m.gguf}
pp=${2:-64}
tg=${3:-32}
reps=${4:-3}
threads=${THREADS:-$(nproc)}

echo "## $(date -u +%F) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
echo
echo "### wgquant"
cargo bench --quiet --bench speed -- -m "$model" -p "$pp" -n "$tg" -r "$reps" 2> >(grep -v XDG_RUNTIME_DIR >&2)
echo
echo "### wgquant, everything on the CPU (integer kernels, $(nproc) threads)"
cargo bench --quiet --bench speed -- -m "$model" -p "$pp" -n "$tg" -r "$reps" --ngl 0 2> >(grep -v XDG_RUNTIME_DIR >&2)
if [[ -n "${LLAMA_BENCH_VK:-}" ]]; then
    echo
    echo "### llama.cpp, Vulkan backend"
    GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES:-0} "$LLAMA_BENCH_VK" -m "$model" -ngl 99 -p "$pp" -n "$tg" -r "$reps" 2>/dev/null
fi
if [[ -n "${LLAMA_BENCH_CPU:-}" ]]; then
    echo
    echo "### llama.cpp, CPU backend ($threads threads)"
    "$LLAMA_BENCH_CPU" -m "$model" -t "$threads" -p "$pp" -n "$tg" -r "$reps" 2>/dev/null
fi
