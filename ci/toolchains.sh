# Sourced, not run: finds the toolchains ci/setup installs and builds one Go
# or TinyGo plugin, for ci/build-plugins and fixtures/defects/build.sh, so
# that the example plugins and the defect corpus are built the same way.
#
# Installs nothing: a missing toolchain is an error that points to ci/setup.
# The caller sets `root` (the repository, absolute) and `pabi` (the CLI for
# `pabi embed`) and runs under `set -euo pipefail`.

missing() {
  echo "error: $1" >&2
  echo "       run ci/setup to install the toolchains" >&2
  exit 1
}

need_rust() {
  command -v cargo >/dev/null 2>&1 || missing "cargo is not on PATH"
  if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    missing "the Rust target wasm32-unknown-unknown is not installed"
  fi
}

need_c() {
  command -v clang >/dev/null 2>&1 || missing "clang is not on PATH"
  command -v wasm-ld >/dev/null 2>&1 || missing "wasm-ld (lld) is not on PATH"
}

# Sets go_cmd: a Go >= 1.24 (//go:wasmexport) from .tools/go or PATH.
need_go() {
  go_cmd=""
  local candidate minor
  for candidate in "$root"/.tools/go/lib/python3*/site-packages/go/bin/go "$root/.tools/go/bin/go" "$(command -v go || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
      minor=$(GOTOOLCHAIN=local "$candidate" env GOVERSION 2>/dev/null | sed -nE 's/^go1\.([0-9]+).*/\1/p')
      if [ -n "$minor" ] && [ "$minor" -ge 24 ]; then
        go_cmd=$(cd "$(dirname "$candidate")" && pwd)/$(basename "$candidate")
        break
      fi
    fi
  done
  [ -n "$go_cmd" ] || missing "no Go >= 1.24 in .tools/go or on PATH"
}

# Sets tinygo_cmd and tinygo_env: TinyGo 0.33.0 as ci/setup builds it, with
# the Go 1.23 it needs (it runs `go list` on the plugin's module) and
# binaryen's wasm-opt, which it runs on every wasm build. The caches live
# under target/, never in the user's home.
need_tinygo() {
  tinygo_cmd="$root/.tools/tinygo/build/tinygo"
  [ -x "$tinygo_cmd" ] || missing "no TinyGo in .tools/tinygo"
  local go123_cmd="" candidate
  for candidate in "$root"/.tools/go123/lib/python3*/site-packages/go/bin/go; do
    [ -x "$candidate" ] && go123_cmd=$(cd "$(dirname "$candidate")" && pwd)/go
  done
  [ -n "$go123_cmd" ] || missing "no Go 1.23 in .tools/go123 (TinyGo 0.33 refuses newer Go)"
  command -v wasm-opt >/dev/null 2>&1 || missing "wasm-opt (binaryen) is not on PATH; TinyGo needs it"
  tinygo_env=(env -u GOFLAGS -u TINYGOROOT PATH="$(dirname "$go123_cmd"):$PATH" GOPROXY=off GOTOOLCHAIN=local
    XDG_CACHE_HOME="$root/target/tinygo-cache" GOCACHE="$root/target/tinygo-cache/go-build")
}

# go_plugin SRC_DIR METADATA OUT: Go's wasip1 port, a c-shared reactor, with
# METADATA embedded. OUT is absolute.
go_plugin() {
  local raw="${3%.wasm}.raw.wasm"
  # GOTOOLCHAIN=local: never download another Go; -trimpath: no build paths in the module.
  (cd "$1" && GOOS=wasip1 GOARCH=wasm GOTOOLCHAIN=local "$go_cmd" build -trimpath -buildmode=c-shared -o "$raw" .)
  "$pabi" embed --metadata "$2" "$raw" -o "$3"
  rm -f "$raw"
}

# tinygo_plugin SRC_DIR METADATA OUT: TinyGo's wasm-unknown target, with
# METADATA embedded under the `core` profile. wasm-unknown is a reactor
# (memory and _initialize exported) that imports only what //go:wasmimport
# names: no WASI. -no-debug drops DWARF; the name section stays (MOD-5).
# -gc=conservative: the default collector, `leaking`, never frees (FN-7).
# OUT is absolute.
tinygo_plugin() {
  local raw="${3%.wasm}.raw.wasm" meta="${3%.wasm}.pabi.json"
  (cd "$1" && "${tinygo_env[@]}" "$tinygo_cmd" build -target=wasm-unknown -gc=conservative -no-debug -opt=z -o "$raw" .)
  python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); m["profile"] = "core"; json.dump(m, open(sys.argv[2], "w"), indent=2)' \
    "$2" "$meta"
  "$pabi" embed --metadata "$meta" "$raw" -o "$3"
  rm -f "$raw" "$meta"
}
