#!/usr/bin/env python3
"""Feeds GIB GiB of 100-byte lines through a three-stage framed pipe and
prints the pipe's resident memory every 10 % of the way, its throughput,
and whether every line came back."""
import argparse
import subprocess
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pabi", required=True)
    parser.add_argument("--plugin", required=True)
    parser.add_argument("--gib", type=float, default=10)
    args = parser.parse_args()
    stage = f"{args.plugin}:echo"
    proc = subprocess.Popen([args.pabi, "pipe", "--framing", "lines", stage, stage, stage],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    line = b"x" * 99 + b"\n"
    block = line * 10_000
    total = int(args.gib * (1 << 30)) // len(block) * len(block)
    received = [0]

    def drain():
        while chunk := proc.stdout.read(1 << 20):
            received[0] += len(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    started = time.monotonic()
    samples = []
    sent = 0
    step = total // 10
    while sent < total:
        proc.stdin.write(block)
        sent += len(block)
        if sent // step != (sent - len(block)) // step:
            samples.append((sent / (1 << 30), rss_kib(proc.pid)))
    proc.stdin.close()
    reader.join()
    code = proc.wait()
    elapsed = time.monotonic() - started
    print(f"{sent / (1 << 30):.1f} GiB of 100-byte lines, 3 stages: {elapsed:.1f} s, "
          f"{sent / elapsed / (1 << 20):.0f} MiB/s, {sent / len(line) / elapsed:,.0f} records/s")
    print("RSS (MiB) after  " + "  ".join(f"{gib:.1f} GiB: {kib / 1024:.1f}" for gib, kib in samples))
    print(f"every line back: {received[0] == sent}; exit status {code}")


if __name__ == "__main__":
    main()
