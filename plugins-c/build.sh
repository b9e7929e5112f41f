#!/usr/bin/env bash
# Builds the C example plugins.
#
#   plugins-c/build.sh OUT_DIR [freestanding|wasi-libc]
#
# writes OUT_DIR/<plugin>.wasm for every plugins-c/examples/<plugin>/, with
# the metadata of its pabi.json embedded by `pabi embed` (clang cannot write
# custom sections). The pabi CLI is $PABI, else `pabi` on PATH.
#
# freestanding (the default): --target=wasm32 -nostdlib, no libc at all.
# wasi-libc: --target=wasm32-wasi -mexec-model=reactor, with malloc & co.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: plugins-c/build.sh OUT_DIR [freestanding|wasi-libc]}
mode=${2:-freestanding}
pabi=${PABI:-pabi}
cc=${CC:-clang}

warnings=(-Wall -Wextra -Werror -std=c11)
case "$mode" in
  freestanding) target=(--target=wasm32 -nostdlib -ffreestanding -mbulk-memory -Wl,--no-entry) ;;
  wasi-libc) target=(--target=wasm32-wasi -mexec-model=reactor) ;;
  *) echo "error: unknown mode \`$mode\` (freestanding or wasi-libc)" >&2; exit 2 ;;
esac

mkdir -p "$out"
for dir in "$here"/examples/*/; do
  name=$(basename "$dir")
  raw="$out/$name.raw.wasm"
  # -O2; --strip-debug drops the DWARF that wasi-libc brings along, but the
  # name section stays (no -s or --strip-all): MOD-5.
  "$cc" "${target[@]}" "${warnings[@]}" -O2 -Wl,--strip-debug -I "$here" -o "$raw" "$dir"*.c
  "$pabi" embed --metadata "$dir/pabi.json" "$raw" -o "$out/$name.wasm"
  rm -f "$raw"
  echo "built $out/$name.wasm ($mode)"
done
