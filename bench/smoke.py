#!/usr/bin/python3
"""bench/smoke.py BIN_DIR: correctness smoke of the bench programs (not a benchmark).

The load generator must pass every byte through each relay variant, and must fail a relay
that cross-wires two streams: a checker that cannot fail would make every bench figure moot.
"""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


class CrossWired(run.EpollRelay):
    """An epoll relay whose spec swaps the endpoints of streams 0 and 1."""

    def start(self, bins, spec_path, streams):
        with open(spec_path) as f:
            lines = f.read().splitlines()
        a, b = lines[0].split(), lines[1].split()
        a[4], b[4] = b[4], a[4]
        lines[0], lines[1] = " ".join(a), " ".join(b)
        bad = spec_path + ".crossed"
        with open(bad, "w") as f:
            f.write("\n".join(lines) + "\n")
        return super().start(bins, bad, streams)


def main():
    bins = {}
    for name in ("bench-load", "bench-epoll-relay", "relay-under-test"):
        p = os.path.join(sys.argv[1], name)
        if os.access(p, os.X_OK):
            bins[name] = p
    variants = [run.VARIANTS[v] for v in ("direct", "epoll", "splice", "vsockmux")
                if not run.VARIANTS[v].pending(bins)]
    bulk = dict(id="smoke-bulk", mode="throughput", streams=3, kind="unix",
                args=["--bytes", str(4 << 20), "--warmup", "65536", "--write-size", "65536"])
    lines = dict(id="smoke-lines", mode="throughput", streams=3, kind="unix",
                 args=["--bytes", "100000", "--write-size", "100"])
    fifo = dict(id="smoke-fifo", mode="throughput", streams=2, kind="fifo", args=["--bytes", str(1 << 20)])
    echo = dict(id="smoke-echo", mode="echo", streams=2, kind="unix", args=["--write-size", "100", "--roundtrips", "200"])
    stall = dict(id="smoke-stall", mode="stall", streams=3, kind="unix", args=["--seconds", "0.2", "--warmup", "4096"])
    bad = 0
    for sc in (bulk, lines, fifo, echo, stall):
        for v in variants:
            r = run.measure(bins, sc, v)
            ok = r.get("ok") and (sc["mode"] != "throughput" or r["bytes"] == sc["streams"] * int(sc["args"][1]))
            print("%-12s %-9s %s %s" % (sc["id"], v.name, "ok" if ok else "FAIL", r.get("error") or ""))
            bad += not ok
    r = run.measure(bins, bulk, CrossWired("crossed", "cross-wired", "--copy"))
    caught = not r.get("ok") and "corrupt" in (r.get("error") or "")
    print("%-12s %-9s %s %s" % ("smoke-bulk", "crossed", "caught" if caught else "NOT CAUGHT", r.get("error")))
    bad += not caught
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
