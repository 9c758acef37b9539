#!/usr/bin/env python3
"""B12 (issue 15): a live upgrade with N processes writing. The guest is the real simulator
(vsockmux-sim, --stats), which runs N bench-tick writers (bench-ctl exec, 32 in flight): process 0,
the probe, writes its line number every 1 ms to a Unix socket this script listens on and
timestamps; the others every 200 ms to file endpoints. After a steady second, `vsockmux upgrade`
moves every VM to a new vsockmuxd live. Reported: the upgrade call's time, the longest gap between
two reads of the probe's stream around the upgrade (and, for comparison, in the second before),
the simulator's bridge connections and stdio redials (want 1 and 0). Then every writer is
stopped, and each process's output must be its line numbers exactly once, in order, and every
exit code 0.

    bench/upgrade.py --build build [--processes 1000]
"""
import argparse
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import TMP_BASE, cli, wait_for  # noqa: E402

VM = "upgvm"
PROBE_US = 1000
OTHERS_US = 200000


def sequence_ok(data):
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return all(line == str(i).encode() for i, line in enumerate(lines)), len(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build", help="the meson build directory")
    ap.add_argument("--processes", type=int, default=1000)
    args = ap.parse_args()
    b = os.path.abspath(args.build)
    bins = {"vsockmuxd": b + "/daemon/vsockmuxd", "vsockmux": b + "/cli/vsockmux", "vsockmux-sim": b + "/sim/vsockmux-sim",
            "bench-tick": b + "/bench/bench-tick", "bench-ctl": b + "/bench/bench-ctl"}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = args.processes
    tmp = tempfile.mkdtemp(prefix="vsockmux-bench-upg-", dir=TMP_BASE)
    sock, uds, stats = tmp + "/ctl.sock", tmp + "/vm.sock", tmp + "/sim.stats"
    stop_file, out, probe_path = tmp + "/stop", tmp + "/out", tmp + "/probe.sock"
    os.mkdir(out)
    procs, new_pid = [], None
    reads, probe_data = [], bytearray()

    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(probe_path)
    lsock.listen(1)

    def probe_reader():
        c, _ = lsock.accept()
        while True:
            d = c.recv(65536)
            if not d:
                return
            reads.append(time.monotonic())
            probe_data.extend(d)

    threading.Thread(target=probe_reader, daemon=True).start()
    try:
        exits = tmp + "/exits"
        os.mkdir(exits)
        procs.append(subprocess.Popen([bins["vsockmuxd"], "--socket", sock, "--state-dir", tmp + "/state", "--hvsock-root",
                                       tmp, "--exit-dir", exits, "--log-level", os.environ.get("BENCH_DAEMON_LOG", "warn")],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=open(tmp + "/vsockmuxd.log", "w"), close_fds=True))
        wait_for(lambda: os.path.exists(sock), 30, "vsockmuxd listening")
        cli(bins, sock, "vm", "add", VM, "--hvsock", uds)
        procs.append(subprocess.Popen([bins["vsockmux-sim"], "--hvsock", uds, "--stats", stats, "--log-level", "error"],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=open(tmp + "/sim.log", "w"), close_fds=True))
        with open(tmp + "/jobs", "w") as f:
            for i in range(n):
                f.write("- %s - %s %d %s\n" % (probe_path if i == 0 else "%s/%d" % (out, i), bins["bench-tick"],
                                               PROBE_US if i == 0 else OTHERS_US, stop_file))
        t = time.monotonic()
        r = subprocess.run([bins["bench-ctl"], "exec", "--socket", sock, "--vm", VM, "--jobs", tmp + "/jobs",
                            "--parallel", "32"], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise OSError("bench-ctl exec: " + r.stderr.strip()[-300:])
        wait_for(lambda: reads and all(os.path.exists("%s/%d" % (out, i)) and os.path.getsize("%s/%d" % (out, i)) > 0
                                       for i in range(1, n)), 300, "every process's first line")
        setup_s = time.monotonic() - t
        time.sleep(1.0)
        t0 = time.monotonic()
        r = subprocess.run([bins["vsockmux"], "--socket", sock, "upgrade"], capture_output=True, text=True, timeout=120)
        t1 = time.monotonic()
        if r.returncode != 0:
            raise OSError("upgrade: " + r.stderr.strip())
        new_pid = int(r.stdout.rsplit("pid ", 1)[1])
        time.sleep(1.0)

        def longest_gap(lo, hi):
            ts = [x for x in reads if lo <= x <= hi]
            return max((b - a for a, b in zip(ts, ts[1:])), default=float("nan")) * 1000

        gap = longest_gap(t0 - 0.2, t1 + 0.5)
        before = longest_gap(t0 - 1.0, t0)
        with open(stats) as f:
            st = dict(line.split() for line in f if line.strip())
        open(stop_file, "w").close()
        # Every writer stops within its interval; the new daemon writes each exit file (conmon's
        # --exit-dir) once its output drained.
        wait_for(lambda: len(os.listdir(exits)) >= n, 120, "every exit file")
        codes = []
        for name in os.listdir(exits):
            with open(os.path.join(exits, name)) as f:
                codes.append(f.read().strip())
        codes_ok = len(codes) == n and all(c == "0" for c in codes)
        ok, probe_lines = sequence_ok(bytes(probe_data))
        for i in range(1, n):
            with open("%s/%d" % (out, i), "rb") as f:
                ok = ok and sequence_ok(f.read())[0]
        print("B12 live upgrade, %d processes writing (set up in %.0f s)" % (n, setup_s))
        print("  upgrade call                %.1f ms" % ((t1 - t0) * 1000))
        print("  longest probe gap, upgrade  %.1f ms   (target <= 50 ms)" % gap)
        print("  longest probe gap, before   %.1f ms" % before)
        print("  bridge connects %s, stdio redials %s   (want 1, 0)" % (st.get("bridge_connects"), st.get("stdio_redials")))
        print("  output exactly once, in order: %s (probe %d lines); every exit code 0: %s" %
              ("yes" if ok else "NO", probe_lines, "yes" if codes_ok else "NO"))
        return 0 if ok and codes_ok and st.get("stdio_redials") == "0" and st.get("bridge_connects") == "1" else 1
    finally:
        if new_pid:
            try:
                os.kill(new_pid, signal.SIGTERM)
            except OSError:
                pass
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get("BENCH_KEEP"):
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
