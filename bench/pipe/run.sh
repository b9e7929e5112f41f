#!/usr/bin/env bash
# A long stream of lines through a three-stage `pabi pipe --framing lines`,
# sampling the process's resident memory as it goes:
#
#   bench/pipe/run.sh [GIB]     (default 10)
#
# The input is generated on the fly (no file of that size is written) and
# the output is counted, not kept. CI does not run it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
gib="${1:-10}"
cargo build --release --manifest-path "$root/Cargo.toml" -q -p pabi-cli -p pabi-fixtures
fixtures="$root/target/release/pabi-fixtures"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$fixtures" wasm "$root/fixtures/good/core.wat" "$work/echo.wasm"
python3 "$here/stream.py" --pabi "$root/target/release/pabi" --plugin "$work/echo.wasm" --gib "$gib"
