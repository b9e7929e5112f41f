#!/usr/bin/env bash
# The peers benchmark (pabi against Extism): builds the Extism plugin and
# the bench binary in this folder's own target directories, then runs it.
# Needs network access to crates.io the first time; CI does not run it.
#
#   bench/peers/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
cargo build --release --target wasm32-unknown-unknown --manifest-path plugin/Cargo.toml --target-dir "$here/target"
cargo run --release --target-dir "$here/target" -- "$here/target/wasm32-unknown-unknown/release/extism_echo_via_host.wasm"
