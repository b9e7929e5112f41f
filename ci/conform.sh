#!/usr/bin/env bash
# Validate and conformance-check pabi plugins in any CI system.
#
#   ci/conform.sh [--report-dir DIR] [--cases N] [--seed S] [--corpus DIR]
#                 [--min-coverage PCT] PATH...
#
# PATH is a plugin file or a folder searched for .wasm files. For each
# plugin, `PLUGIN.vectors.json` beside it (if present) is run as its test
# vectors. Writes DIR/pabi.sarif, DIR/conform-*.xml (JUnit), DIR/coverage-*.lcov
# (blocks the explore check reached) and, for a failing input too long to
# show, DIR/reproducers/ (named in the JUnit), and prints each plugin's
# coverage; keep the --corpus folder between runs to explore further. Exits
# 0 when every plugin is valid and conformant, 1 when one is not (or is below
# --min-coverage), 2 on a usage or I/O error. Uses `pabi` from PATH, or this
# repository's build.
set -euo pipefail

report_dir=""
extra=()
paths=()
while [ $# -gt 0 ]; do
  case "$1" in
    --report-dir) report_dir="$2"; shift 2 ;;
    --cases|--seed|--corpus|--min-coverage) extra+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; exit 2 ;;
    *) paths+=("$1"); shift ;;
  esac
done
[ ${#paths[@]} -gt 0 ] || { echo "error: give at least one plugin or folder" >&2; exit 2; }

here="$(cd "$(dirname "$0")/.." && pwd)"
if command -v pabi >/dev/null 2>&1; then
  pabi=pabi
elif [ -x "$here/target/debug/pabi" ]; then
  pabi="$here/target/debug/pabi"
else
  echo "error: no pabi on PATH; install it from a checkout of pabi with: cargo install --locked --path cli" >&2
  exit 2
fi

plugins=()
for path in "${paths[@]}"; do
  if [ -d "$path" ]; then
    while IFS= read -r f; do plugins+=("$f"); done < <(find "$path" -name '*.wasm' | sort)
  elif [ -f "$path" ]; then
    plugins+=("$path")
  else
    echo "error: no such file or folder: $path" >&2
    exit 2
  fi
done
[ ${#plugins[@]} -gt 0 ] || { echo "error: no .wasm files found" >&2; exit 2; }

status=0
if [ -n "$report_dir" ]; then
  mkdir -p "$report_dir"
  "$pabi" validate --format sarif "${plugins[@]}" > "$report_dir/pabi.sarif" || status=$?
fi
[ "$status" -le 1 ] || exit "$status"

conform_status=0
for plugin in "${plugins[@]}"; do
  args=("${extra[@]}")
  vectors="${plugin%.wasm}.vectors.json"
  [ -f "$vectors" ] && args+=(--vectors "$vectors")
  if [ -n "$report_dir" ]; then
    name="$(echo "$plugin" | tr '/' '_')"
    junit="$report_dir/conform-${name%.wasm}.xml"
    "$pabi" conform "${args[@]}" --format junit --report-dir "$report_dir/reproducers" \
      --coverage-report "$report_dir/coverage-${name%.wasm}.lcov" "$plugin" > "$junit" || conform_status=$?
    # The explore check's figures, from the JUnit properties.
    coverage="$(sed -n 's/.*name="coverage.blocks_reached" value="\([0-9]*\)".*name="coverage.blocks_total" value="\([0-9]*\)".*name="coverage.percent" value="\([0-9.]*\)".*/\1\/\2 blocks (\3%)/p' "$junit" | head -n 1)"
    echo "$plugin: coverage ${coverage:-not measured}"
  else
    "$pabi" conform "${args[@]}" "$plugin" || conform_status=$?
  fi
  [ "$conform_status" -le 1 ] || exit "$conform_status"
done
[ "$status" -eq 0 ] && [ "$conform_status" -eq 0 ] || exit 1
