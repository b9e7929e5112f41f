#!/usr/bin/env bash
# Load test of `pabi serve` with a real HTTP load generator, all on
# loopback and bounded in time:
#
#   bench/serve/run.sh [SECONDS]     (default 10 s per phase)
#   bench/serve/run.sh --only-clients (the hostile-client scenarios alone:
#                                      no hey, a few seconds)
#   bench/serve/run.sh --only-mix [SECONDS] (a light echo beside the hostile mix
#                                      alone, both isolations)
#   bench/serve/run.sh --only-throughput (requests/s against the baseline,
#                                      an axum + wasmtime server, alone)
#
# Installs `hey` (Debian package, a static binary) into bench/serve/.tools
# with apt-get download, builds the release `pabi` and `pabi-fixtures`, and
# the baseline (bench/serve/baseline, its own workspace) into
# bench/serve/.tools/baseline, then runs bench/serve/throughput.py and
# bench/serve/load.py. CI does not run it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="$here/.tools"
hey="$tools/root/usr/bin/hey"
if [ "${1:-}" = "--only-clients" ]; then
  cargo build --release --manifest-path "$root/Cargo.toml" -q -p pabi-cli -p pabi-fixtures
  exec python3 "$here/load.py" --hey /nonexistent --root "$root" --only-clients
fi
if [ ! -x "$hey" ]; then
  mkdir -p "$tools"
  (cd "$tools" && apt-get download hey && dpkg -x hey_*.deb root)
fi
cargo build --release --manifest-path "$root/Cargo.toml" -q -p pabi-cli -p pabi-fixtures
cargo build --release --manifest-path "$here/baseline/Cargo.toml" --locked -q --target-dir "$tools/baseline"
baseline="$tools/baseline/release/pabi-bench-serve-baseline"
throughput() { python3 "$here/throughput.py" --hey "$hey" --root "$root" --baseline "$baseline"; }
if [ "${1:-}" = "--only-throughput" ]; then
  throughput
  exit
fi
if [ "${1:-}" = "--only-mix" ]; then
  exec python3 "$here/load.py" --hey "$hey" --root "$root" --seconds "${2:-10}" --only-mix
fi
cargo bench --manifest-path "$root/Cargo.toml" -q -p pabi-host --bench calls 2>/dev/null | tail -4
# The library without HTTP: in-process pool against a worker process.
cargo bench --manifest-path "$root/Cargo.toml" -q -p pabi-host --features worker-process --bench isolation 2>/dev/null
throughput
python3 "$here/load.py" --hey "$hey" --root "$root" --seconds "${1:-10}"
