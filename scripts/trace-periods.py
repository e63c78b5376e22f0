#!/usr/bin/env python3
"""Reads `mwi-store bench deposit --latency-trace FILE` and shows where in time the tail is.

Prints p50/p99/max, the worst latency per window of sending (ms, one character column per
window), and the autocorrelation of that series at a few lags: a tail made by something
periodic (sessions turning over together, mailboxes filing together; docs/benchmarks.md,
Fixes 23-24) shows as a high value at its period.

    python3 scripts/trace-periods.py FILE [--window-ms 10] [--lags-ms 50,100,200,300]
"""

import argparse
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--window-ms", type=float, default=10.0)
    ap.add_argument("--lags-ms", default="50,100,200,300,500")
    ap.add_argument("--columns", type=int, default=50, help="windows per printed line")
    args = ap.parse_args()

    rows = []
    with open(args.trace, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            sent, latency = line.split()
            rows.append((int(sent), int(latency)))
    if not rows:
        print("no answered SEND in the trace", file=sys.stderr)
        return 1

    latencies = sorted(l for _, l in rows)
    at = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] / 1000
    print(f"{len(rows)} SENDs: p50 {at(0.5):.2f} ms, p99 {at(0.99):.2f} ms, max {latencies[-1] / 1000:.1f} ms")

    width = int(args.window_ms * 1000)
    first = rows[0][0]
    worst = {}
    for sent, latency in rows:
        w = (sent - first) // width
        worst[w] = max(worst.get(w, 0), latency)
    series = [worst.get(w, 0) for w in range(max(worst) + 1)]

    print(f"worst latency (ms) per {args.window_ms:g} ms of sending:")
    for i in range(0, len(series), args.columns):
        print(" ".join(f"{v // 1000:2d}" for v in series[i : i + args.columns]))

    mean = sum(series) / len(series)
    var = sum((v - mean) ** 2 for v in series) or 1.0
    out = []
    for lag_ms in (float(x) for x in args.lags_ms.split(",") if x):
        lag = round(lag_ms / args.window_ms)
        if 0 < lag < len(series):
            c = sum((series[i] - mean) * (series[i + lag] - mean) for i in range(len(series) - lag))
            out.append(f"{lag_ms:g} ms {c / var:.2f}")
    print("autocorrelation of the worst latencies: " + ", ".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
