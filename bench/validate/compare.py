#!/usr/bin/env python3
"""Times `pabi validate FILE` against `wasm-tools validate FILE`.

Each round runs both once, in alternating order, and records each
process's wall time from spawn to exit; the table gives medians, the
ratio of the medians and the binaries' sizes. Both must accept the file:
a failing run aborts the bench rather than timing an error path.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time


def timed(cmd):
    started = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} exited {done.returncode}: {done.stderr.decode(errors='replace')}")
    return elapsed


def version(cmd):
    return subprocess.run(cmd + ["--version"], capture_output=True, text=True).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--pabi", required=True)
    parser.add_argument("--wasm-tools", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    print(f"pabi:       {version([args.pabi])}, {os.path.getsize(args.pabi) / 1e6:.1f} MB")
    print(f"wasm-tools: {version([args.wasm_tools])}, {os.path.getsize(args.wasm_tools) / 1e6:.1f} MB")
    print(f"{args.runs} alternating runs per file, median wall time per process\n")
    print(f"{'file':<28} {'size':>9} {'wasm-tools':>11} {'pabi':>9} {'ratio':>7}")
    for path in args.files:
        pabi_cmd = [args.pabi, "validate", path]
        tools_cmd = [args.wasm_tools, "validate", path]
        pabi, tools = [], []
        for i in range(args.runs):
            # Alternate which goes first, so neither always follows the other.
            if i % 2 == 0:
                pabi.append(timed(pabi_cmd))
                tools.append(timed(tools_cmd))
            else:
                tools.append(timed(tools_cmd))
                pabi.append(timed(pabi_cmd))
        p, t = statistics.median(pabi), statistics.median(tools)
        name = os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))
        size = os.path.getsize(path)
        print(f"{name:<28} {size:>7} B {t * 1e3:>8.2f} ms {p * 1e3:>6.2f} ms {p / t:>6.2f}x")


if __name__ == "__main__":
    main()
