#!/usr/bin/env bash
# `pabi validate` against `wasm-tools validate`, whole processes, start-up
# included, run alternately so that both see the same machine.
#
#   bench/validate/run.sh [RUNS]
#
# Installs wasm-tools from crates.io into bench/validate/.tools (once, with
# only its `validate` subcommand: the smallest and fastest-starting build,
# which makes the comparison harder for pabi, not easier). Builds the
# release `pabi` and the example plugins (ci/build-plugins) if missing.
# Needs network access the first time; CI does not run it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
runs="${1:-200}"
wasm_tools_version=1.263.0

tools="$here/.tools"
if [ ! -x "$tools/bin/wasm-tools" ]; then
  cargo install --locked wasm-tools --version "$wasm_tools_version" --root "$tools" \
    --no-default-features --features validate
fi
cargo build --release --manifest-path "$root/Cargo.toml" -p pabi-cli --bin pabi
small="$root/target/plugins/c/greet.wasm"
large="$root/target/plugins/go/text.wasm"
if [ ! -f "$small" ] || [ ! -f "$large" ]; then
  PABI="$root/target/release/pabi" "$root/ci/build-plugins"
fi
python3 "$here/compare.py" --runs "$runs" \
  --pabi "$root/target/release/pabi" --wasm-tools "$tools/bin/wasm-tools" "$small" "$large"
