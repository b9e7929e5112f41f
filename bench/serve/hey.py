"""Runs `hey` (an HTTP load generator) and reads its figures."""
import re
import subprocess


def hey(hey_bin, url, seconds, workers, body, rate=None, nice=False):
    """Runs hey for `seconds`, each worker at most `rate` requests/s if
    given, at the lowest CPU priority if `nice`; returns (requests/s, p50
    s, p99 s, {status: count}, errors)."""
    return hey_output([*(["nice", "-n", "19"] if nice else []), hey_bin, "-z", f"{seconds}s", "-c", str(workers),
                       *(["-q", str(rate)] if rate else []), "-m", "POST", "-D", body, url])


def hey_n(hey_bin, url, requests, workers, body):
    """Runs hey for `requests` requests; returns what `hey` does."""
    return hey_output([hey_bin, "-n", str(requests), "-c", str(workers), "-m", "POST", "-D", body, url])


def hey_output(command):
    """Runs a hey command and reads its figures."""
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    # hey leaves out a percentile it has too few answers for.
    def percentile(p):
        found = re.search(rf"{p}%+ in ([\d.]+) secs", out)
        return float(found.group(1)) if found else float("nan")
    p50, p99 = percentile(50), percentile(99)
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    errors = re.findall(r"\[\d+\]\s+(.+)", out.split("Error distribution:")[1]) if "Error distribution:" in out else []
    return rps, p50, p99, codes, errors
