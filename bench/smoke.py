#!/usr/bin/python3
"""bench/smoke.py BENCH_BIN_DIR [BUILD_ROOT]: correctness smoke of the bench programs (not a benchmark).

The load generator must pass every byte through each relay variant (the real daemon path
included), and must fail a relay that cross-wires two streams, and a daemon whose stdio ports
are cross-wired: a checker that cannot fail would make every bench figure moot. The last part
runs one small save/restore (B10/B11) and checks its output crossed exactly once, and B12's and
B13's scripts (upgrade.py, restart.py with file and fifo endpoints) at 5 processes with their checks.
"""

import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import io_uring_available  # noqa: E402


def swap_field(spec_path, field, suffix):
    with open(spec_path) as f:
        lines = f.read().splitlines()
    a, b = lines[0].split(), lines[1].split()
    a[field], b[field] = b[field], a[field]
    lines[0], lines[1] = " ".join(a), " ".join(b)
    bad = spec_path + suffix
    with open(bad, "w") as f:
        f.write("\n".join(lines) + "\n")
    return bad


class CrossedDaemon(run.VsockmuxUnderTest):
    """The real daemon, with streams 0 and 1 dialling each other's stdio port."""

    def link_id(self, i):
        return {0: 1, 1: 0}.get(i, i)


class CrossWired(run.EpollRelay):
    """An epoll relay whose spec swaps the endpoints of streams 0 and 1."""

    def start(self, bins, spec_path, streams):
        return super().start(bins, swap_field(spec_path, 4, ".crossed"), streams)


def bench_script(root, argv):
    """B12's and B13's scripts at 5 processes: their own checks (every line, every exit code) pass."""
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, os.path.join(here, argv[0]), "--build", root, "--processes", "5"] + argv[1:],
                       capture_output=True, text=True, timeout=240)
    return r.returncode == 0, "" if r.returncode == 0 else (r.stdout + r.stderr).strip()[-400:]


def main():
    why = io_uring_available.unavailable()
    if why:
        # What this smoke is for, relay/ and the daemon, needs io_uring: a skip, as liburing's tests do.
        print("SKIP: " + why)
        return 77
    root = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.abspath(sys.argv[1]))
    bins = run.find_programs(sys.argv[1], root)
    variants = [run.VARIANTS[v] for v in ("direct", "epoll", "splice", "relay", "vsockmux")
                if not run.VARIANTS[v].pending(bins)]
    if run.VARIANTS["vsockmux"].pending(bins):
        print("vsockmux (daemon path) not run: %s" % run.VARIANTS["vsockmux"].pending(bins))
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
    if not run.VARIANTS["vsockmux"].pending(bins):
        r = run.measure(bins, bulk, CrossedDaemon("crossed", "cross-wired daemon"))
        caught = not r.get("ok") and "corrupt" in (r.get("error") or "")
        print("%-12s %-9s %s %s" % ("smoke-bulk", "crossed-d", "caught" if caught else "NOT CAUGHT", r.get("error")))
        bad += not caught
    if not run.VARIANTS["vsockmux"].pending(bins) and "vsockmux-sim" in bins and "bench-tick" in bins:
        runs = run.measure_saverestore(bins, dict(id="smoke-sr", processes=5), 2)
        ok = all(r.get("ok") for r in runs)
        print("%-12s %-9s %s %s" % ("smoke-sr", "vsockmux", "ok" if ok else "FAIL", runs[0].get("error") or ""))
        bad += not ok
        for name, argv in (("smoke-upg", ["upgrade.py"]), ("smoke-rst", ["restart.py", "--wait-teardown"]),
                           ("smoke-rst-f", ["restart.py", "--wait-teardown", "--fifo"])):
            ok, why = bench_script(root, argv)
            print("%-12s %-9s %s %s" % (name, "vsockmux", "ok" if ok else "FAIL", why))
            bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
