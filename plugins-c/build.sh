#!/usr/bin/env bash
# Builds the C example plugins.
#
#   plugins-c/build.sh OUT_DIR [freestanding|wasi-libc] [PLUGINS_DIR]
#
# writes OUT_DIR/<plugin>.wasm for every PLUGINS_DIR/<plugin>/ (default
# plugins-c/examples), with the metadata of its pabi.json embedded by
# `pabi embed` (clang cannot write custom sections). The pabi CLI is $PABI,
# else `pabi` on PATH. Other folders of plugins (fixtures/defects/c) build
# with the same flags through PLUGINS_DIR.
#
# freestanding (the default): --target=wasm32 -nostdlib, no libc at all.
# wasi-libc: --target=wasm32-wasi -mexec-model=reactor, with malloc & co.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage="usage: plugins-c/build.sh OUT_DIR [freestanding|wasi-libc] [PLUGINS_DIR]"
out=${1:?$usage}
mode=${2:-freestanding}
plugins=${3:-$here/examples}
[ -d "$plugins" ] || { echo "error: no such folder: $plugins" >&2; exit 2; }
pabi=${PABI:-pabi}
cc=${CC:-clang}

warnings=(-Wall -Wextra -Werror -std=c11)
case "$mode" in
  freestanding)
    compile=(--target=wasm32 -nostdlib -ffreestanding -mbulk-memory)
    link=(--target=wasm32 -nostdlib -Wl,--no-entry) ;;
  wasi-libc)
    compile=(--target=wasm32-wasi)
    link=(--target=wasm32-wasi -mexec-model=reactor) ;;
  *) echo "error: unknown mode \`$mode\` (freestanding or wasi-libc)" >&2; exit 2 ;;
esac

mkdir -p "$out"
objs=$(mktemp -d)
trap 'rm -rf "$objs"' EXIT
for dir in "$plugins"/*/; do
  name=$(basename "$dir")
  raw="$out/$name.raw.wasm"
  # Compiled with -O2, then linked in a second command without any -O:
  # clang runs binaryen's wasm-opt after the link whenever the link command
  # has an -O flag and wasm-opt is on PATH, and wasm-opt drops the name
  # section (MOD-5), so the plugin would depend on what else is installed.
  # --strip-debug drops the DWARF that wasi-libc brings along, but the name
  # section stays (no -s or --strip-all).
  rm -f "$objs"/*.o
  for src in "$dir"*.c; do
    "$cc" "${compile[@]}" "${warnings[@]}" -O2 -I "$here" -c -o "$objs/$(basename "$src" .c).o" "$src"
  done
  "$cc" "${link[@]}" -Wl,--strip-debug -o "$raw" "$objs"/*.o
  "$pabi" embed --metadata "$dir/pabi.json" "$raw" -o "$out/$name.wasm"
  rm -f "$raw"
  echo "built $out/$name.wasm ($mode)"
done
