#!/usr/bin/env python3
"""Runs the compile bombs and the flood fixtures through `pabi run` in
release mode and prints, for each, the time and peak RSS of the whole
process next to the budget that bounds it (LIM-3, LIM-5, LIM-11, LIM-12).

    python3 bench/hostile/run.py            # builds target/release/pabi first

Compile bombs are written here, byte by byte; the flood fixtures are the
hostile WAT plugins of fixtures/hostile. Each row is one fresh process, so
its peak RSS includes the engine (about 22 MB for a no-op plugin, the first
row). Figures vary with the machine: compare the rows of one run."""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "fixtures", "host-conformance"))
from wasm_bytes import leb, name, section, vec  # noqa: E402

PABI = os.path.join(ROOT, "target", "release", "pabi")
FIXTURES = os.path.join(ROOT, "target", "release", "pabi-fixtures")


def plugin(bodies, plugin_body_index=0):
    """A core plugin whose defined functions have the given bodies (code
    bytes after the locals, without `end`); function `plugin_body_index` is
    exported as `pabi_fn_f` and must be (i32) -> i32."""
    metadata = {"abi": "1.0", "name": "bomb", "version": "1.0.0", "profile": "core",
                "functions": [{"name": "f"}], "capabilities": []}
    types = vec([b"\x60" + vec([b"\x7f"]) + vec([b"\x7f"])])
    code = b"".join(leb(len(body) + 2) + b"\x00" + body + b"\x0b" for body in bodies)
    module = b"\0asm\x01\0\0\0"
    module += section(1, types)
    module += section(3, leb(len(bodies)) + leb(0) * len(bodies))
    module += section(5, vec([b"\x00" + leb(1)]))
    module += section(7, vec([name("memory") + b"\x02" + leb(0),
                              name("pabi_fn_f") + b"\x00" + leb(plugin_body_index)]))
    module += section(10, leb(len(bodies)) + code)
    module += section(0, name("pabi") + json.dumps(metadata, separators=(",", ":")).encode())
    return module


def arithmetic(nbytes):
    """About `nbytes` of `local.get 0; local.get 0; i32.add; local.set 0`,
    then the result: work for the compiler in every byte."""
    step = b"\x20\x00\x20\x00\x6a\x21\x00"
    return step * (nbytes // len(step)) + b"\x20\x00"


def bombs(out):
    trivial = b"\x20\x00"  # local.get 0: returns its argument
    cases = [
        ("no-op plugin (baseline)", [trivial], "loads"),
        ("1,000,000 empty functions (6 MB)", [trivial] * 1_000_000, "MODULE_LIMIT: 100,000 functions"),
        ("one 7.6 MB function", [arithmetic(8_000_000)], "MODULE_LIMIT: 1 MiB per body"),
        ("100,000 functions of 300 B (at the function cap)", [arithmetic(300)] * 100_000, "compiles: 30 MB of code"),
        ("one function of 1 MiB (at the body cap)", [arithmetic((1 << 20) - 16)], "compiles"),
        ("31 functions of 1 MiB (at the module cap)", [arithmetic((1 << 20) - 16)] * 31, "compiles: 31 MiB of code"),
    ]
    rows = []
    for label, bodies, budget in cases:
        path = os.path.join(out, f"bomb-{len(rows)}.wasm")
        with open(path, "wb") as f:
            f.write(plugin(bodies))
        rows.append((label, path, ["run", path, "f", "--format", "json", "--no-cache"], budget))
    # The validator stops at the first body that needs a feature outside the
    # profile (here a tail call in the first of 100,000 bodies) instead of
    # validating every body first.
    path = os.path.join(out, "tail-call.wasm")
    with open(path, "wb") as f:
        f.write(plugin([b"\x20\x00\x12\x00"] + [arithmetic(60)] * 99_999))  # return_call 0
    rows.append(("`pabi validate`: a tail call, then 99,999 bodies", path, ["validate", path],
                 "one finding, MOD-2"))
    return rows


def floods(out):
    rows = []
    for fixture, function, args, budget in [
        ("output-flood", "flood", [], "OUTPUT_LIMIT at 16 MiB (LIM-5)"),
        ("tiny-writes", "drip", [], "1,000,000 writes of 1 byte"),
        ("log-flood", "flood", [], "1 MiB of log per call (LIM-11)"),
        ("memory-bomb", "bomb", [], "MEMORY_LIMIT at 128 MiB (LIM-1)"),
        ("infinite-loop", "spin", [], "TIMEOUT at 1 s (LIM-3)"),
    ]:
        path = os.path.join(out, f"{fixture}.wasm")
        subprocess.run([FIXTURES, "wasm", os.path.join(ROOT, "fixtures", "hostile", f"{fixture}.wat"), path],
                       check=True)
        rows.append((fixture, path, ["run", path, function, "--format", "json", "--no-cache", *args], budget))
    return rows


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "pabi-cli", "-p", "pabi-fixtures"], cwd=ROOT,
                   check=True)
    with tempfile.TemporaryDirectory() as out:
        rows = bombs(out) + floods(out)
        print(f"{'plugin':52} {'size':>9} {'result':16} {'time':>8} {'peak RSS':>9}  budget")
        for label, path, argv, budget in rows:
            # Peak RSS of the child alone: run it under a fresh Python
            # process whose own children are only this one.
            probe = subprocess.run(
                [sys.executable, "-c",
                 "import resource,subprocess,sys,time;t=time.monotonic();"
                 "p=subprocess.run(sys.argv[1:],stdout=subprocess.PIPE,stderr=subprocess.DEVNULL);"
                 "print(time.monotonic()-t);print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
                 "sys.stdout.write(p.stdout.decode(errors='replace'))",
                 PABI, *argv],
                stdout=subprocess.PIPE, check=True)
            lines = probe.stdout.decode().splitlines()
            elapsed, rss_kib = float(lines[0]), int(lines[1])
            result = json.loads(lines[2]) if len(lines) > 2 and lines[2].startswith("{") else {}
            kind = result.get("kind", "OK" if result.get("ok") else (lines[2][:16] if len(lines) > 2 else "-"))
            size = os.path.getsize(path)
            print(f"{label:52} {size:>9,} {kind:16} {elapsed:>7.2f}s {rss_kib / 1024:>7.0f}MB  {budget}")


if __name__ == "__main__":
    main()
