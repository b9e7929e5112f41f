#!/usr/bin/env python3
"""Throughput of `pabi serve` against the limit of its stack.

The baseline (bench/serve/baseline) is an axum server that keeps two raw
wasmtime instances of the same echo plugin behind mutexes and does only
the work a call needs. Both serve `POST /v1/plugins/echo/echo`; `pabi
serve` runs with its default settings (timeouts, caps, the CPU gate and
metrics on) and 2 instances, in process, and again with worker-process
isolation, reported with its own ratio.

For each body size (64 B, 1 KiB, 64 KiB) the servers are measured in
turn, `rounds` times, each with `hey -n REQUESTS -c 16`, so that a change
in the machine's load falls on all of them alike; the figure of each is
the median round. Prints requests/s, p50 and p99 of each, and the ratios
against the baseline with the goal (pabi in process >= 0.9x the
baseline's requests/s, p99 no worse).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hey import hey_n  # noqa: E402


def started(command, env=None):
    """A server that prints `listening on http://ADDR` on stderr first."""
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    first = server.stderr.readline().strip()
    if "listening on http://" not in first:
        server.kill()
        raise SystemExit(f"{command[0]} did not start: {first}")
    address = first.split("listening on http://", 1)[1]
    threading.Thread(target=lambda: server.stderr.read(), daemon=True).start()
    return server, address


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hey", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--baseline", required=True, help="the baseline server's binary")
    parser.add_argument("--requests", type=int, default=40000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="64,1024,65536")
    args = parser.parse_args()
    pabi = os.path.join(args.root, "target", "release", "pabi")
    fixtures = os.path.join(args.root, "target", "release", "pabi-fixtures")
    work = tempfile.mkdtemp(prefix="pabi-serve-throughput-")
    plugins = os.path.join(work, "plugins")
    os.mkdir(plugins)
    echo = os.path.join(plugins, "echo.wasm")
    subprocess.run([fixtures, "wasm", os.path.join(args.root, "fixtures", "good", "core.wat"), echo], check=True)
    config = os.path.join(work, "serve.toml")
    with open(config, "w") as f:
        f.write("[defaults]\ninstances = 2\n")
    serve = [pabi, "serve", plugins, "--listen", "127.0.0.1:0", "--watch", "0s", "--config", config]
    servers = {
        "baseline": started([args.baseline, echo]),
        "pabi in_process": started([*serve, "--isolation", "in_process"], {"PABI_LOG": "warn"}),
        "pabi worker_process": started([*serve, "--isolation", "worker_process"], {"PABI_LOG": "warn"}),
    }
    failed = False
    try:
        print(f"hey -n {args.requests} -c 16, median of {args.rounds} rounds taken in turn; 2 instances\n")
        print(f"{'body':>6}  {'server':<20} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}   ratio to baseline")
        for size in [int(s) for s in args.sizes.split(",")]:
            body = os.path.join(work, f"{size}.bin")
            with open(body, "wb") as f:
                f.write(b"x" * size)
            # Warm every server: compiled code, connections, allocators.
            for _, address in servers.values():
                hey_n(args.hey, f"http://{address}/v1/plugins/echo/echo", 2000, 16, body)
            runs = {name: [] for name in servers}
            for _ in range(args.rounds):
                for name, (_, address) in servers.items():
                    result = hey_n(args.hey, f"http://{address}/v1/plugins/echo/echo", args.requests, 16, body)
                    if set(result[3]) != {200} or result[4]:
                        print(f"{name}: answers {result[3]}, errors {result[4][:3]}")
                        failed = True
                    runs[name].append(result)
            base = None
            for name, results in runs.items():
                rps = statistics.median(r[0] for r in results)
                p50 = statistics.median(r[1] for r in results) * 1000
                p99 = statistics.median(r[2] for r in results) * 1000
                ratio = ""
                if base is None:
                    base = (rps, p99)
                else:
                    ratio = f"req/s {rps / base[0]:.2f}x, p99 {p99 / base[1]:.2f}x"
                    if name == "pabi in_process":
                        met = rps >= 0.9 * base[0] and p99 <= base[1]
                        ratio += "  (goal >= 0.90x, p99 <= 1.00x: " + ("met" if met else "NOT met") + ")"
                size_text = f"{size // 1024} KiB" if size >= 1024 else f"{size} B"
                print(f"{size_text:>6}  {name:<20} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f}   {ratio}")
            print()
    finally:
        for server, _ in servers.values():
            server.kill()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
