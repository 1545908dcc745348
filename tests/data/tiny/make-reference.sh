#!/usr/bin/env bash
# llama.cpp's outputs on the tiny models of this directory (written by
# `cargo run --release --example make-tiny-models -- tests/data/tiny`), for tests/architectures.rs:
#
#   REFDUMP=/path/to/llama.cpp/build-cpu/bin/refdump tests/data/tiny/make-reference.sh
#
# refdump is built beside llama.cpp (CPU backend) by the project's shared
# tools/build-llamacpp.sh, from the llama.cpp that the llama-cpp-python 0.3.36 sdist vendors. For
# each model it writes NAME.greedy.json (the prompt's ids, 8 greedy tokens and the top-1 minus
# top-2 margin at each step) and NAME.step0.logits.f32 (the logits after the prompt).
set -euo pipefail
cd "$(dirname "$0")"
: "${REFDUMP:?set REFDUMP to the refdump helper built beside llama.cpp}"
prompt="the cat sat in the hat then the"
for m in llama3 qwen3 phi3 gemma2; do
    "$REFDUMP" "$m.gguf" "$prompt" 8 "$m.greedy.json" "$m.step0.logits.f32" 2>/dev/null
    echo "$m: $(tr -d '\n' < "$m.greedy.json" | grep -o '"generated_text": "[^"]*"')"
done
