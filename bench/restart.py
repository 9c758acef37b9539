#!/usr/bin/env python3
"""B13 (issue 15): SIGKILL with N processes writing, then a restart on the same state directory.
The writers are B12's (bench/writers.py: the real simulator, stdio resume on; the probe every 1 ms
to a Unix socket this script timestamps, the others every 200 ms to file endpoints, or with --fifo
to fifos a reader process copies out). After a steady second vsockmuxd gets SIGKILL; 100 ms after
it is reaped (systemd's RestartSec default), or with --wait-teardown once the kernel closed every
listener the dead daemon's io_uring still held, a new one starts with the same arguments; how long
those listeners outlived it is reported. Measured from its start (Popen): (a) its control socket
answering a call, (b) the probe's first byte, (c) every stream grown again (each endpoint longer
than at the kill: the B13 target, <= 1 s); and (d) the longest gap in the probe's stream after its
first byte. Then every writer stops; file endpoints must hold their line numbers exactly once and
in order, fifo endpoints and the probe at least once with no gap (duplicated bytes reported), and
every exit code (its exit file and `vsockmux wait` on the new daemon) 0.

    bench/restart.py --build build [--processes 1000] [--fifo] [--wait-teardown] [--vsockmuxd PATH]

BENCH_RESTART_WRAP="perf record -g -o /tmp/b13.perf --" runs the new daemon under that command;
BENCH_KEEP=1 keeps the temporary directory (both daemons' logs, the simulator's).
"""
import argparse
import os
import shlex
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import wait_for  # noqa: E402
from writers import Writers, at_least_once, sequence_ok  # noqa: E402

SETTLE_S = 0.1
DEADLINE_S = 60
STOP_BATCH = 100  # under the daemon's 128 control connections


def answering(w, started, out):
    """(a): the first control call the new daemon answers; the dead one's socket refuses or hangs."""
    while time.monotonic() - started < DEADLINE_S:
        try:
            r = subprocess.run([w.bins["vsockmux"], "--socket", w.sock, "vm", "ls"], capture_output=True, timeout=2)
            if r.returncode == 0:
                out.append(time.monotonic())
                return
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.002)


def refusal(w):
    """The new daemon's reason for not recovering the VM, if it logged one."""
    with open(w.daemon_log(w.daemons), errors="replace") as f:
        return next((line.strip() for line in f if "cannot recover" in line), None)


def all_grown(w, daemon, base, started):
    """(c): when the last endpoint grew past its length at the kill; returns (time, how many grew)."""
    left, checked = set(range(1, w.n)), started
    while left and time.monotonic() - started < DEADLINE_S and daemon.poll() is None:
        left = {i for i in left if w.size(i) <= base[i]}
        if time.monotonic() - checked > 0.2:
            checked = time.monotonic()
            if refusal(w):
                break
    return time.monotonic(), w.n - 1 - len(left)


def listening_inodes():
    with open("/proc/net/unix") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return {int(r[6]) for r in rows if len(r) > 6 and int(r[3], 16) & 0x10000}  # __SO_ACCEPTCON


def listeners_of(pid):
    """The inodes of the Unix sockets pid listens on (its control socket, bridge and stdio ports)."""
    socks = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            socks.add(int(link[8:-1]))
    return socks & listening_inodes()


def teardown(inodes, t_dead, out):
    """How long the dead daemon's listeners outlive it: its io_uring's pending accepts hold them
    until the kernel's ring teardown, and meanwhile they accept (the guest's redials land there)."""
    while inodes & listening_inodes() and time.monotonic() - t_dead < DEADLINE_S:
        time.sleep(0.005)
    out.append(time.monotonic())


def stop_and_wait(w):
    """Stops the writers STOP_BATCH at a time, each batch's `vsockmux wait` calls sent as it is
    told to stop: a VM remembers only its last 256 exits for wait (VMM_DEFAULT_EXITED_KEEP), and a
    wait in flight holds its process. Returns [(exit code, what it said)] in w.pids's order."""
    res = []
    for lo in range(0, w.n, STOP_BATCH):
        waits = [subprocess.Popen([w.bins["vsockmux"], "--socket", w.sock, "wait", w.vm, str(pid)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for pid in w.pids[lo:lo + STOP_BATCH]]
        open(w.stop_path(lo), "w").close()
        for p in waits:
            out, _ = p.communicate(timeout=120)
            res.append((p.returncode, out.strip()))
    return res


LOG_MARKS = (("first log line", ""), ("recovered", "vsockmuxd: recovered"), ("listening", "vsockmuxd: listening on"),
             ("bridge negotiated", "negotiated protocol"))


def log_marks(path, wall_start):
    """Where the new daemon's start-up went, from its log's timestamps (--log-level info)."""
    marks = []
    with open(path, errors="replace") as f:
        lines = f.readlines()
    for name, text in LOG_MARKS:
        line = next((x for x in lines if text in x), None)
        try:
            marks.append("%s +%.0f" % (name, (float(line.split()[0]) - wall_start) * 1000))
        except (AttributeError, IndexError, ValueError):
            pass
    return ", ".join(marks) + " ms" if marks else "none (BENCH_DAEMON_LOG=info)"


def restart(w, wait_teardown):
    """SIGKILL, then the new daemon; returns the figures (ms from its start) and its time."""
    d = w.procs[0]
    inodes = listeners_of(d.pid)
    t_kill = time.monotonic()
    d.kill()
    d.wait()
    t_dead, gone = time.monotonic(), []
    watch = threading.Thread(target=teardown, args=(inodes, t_dead, gone), daemon=True)
    watch.start()
    time.sleep(SETTLE_S)
    if wait_teardown:
        watch.join()
    still = len(inodes & listening_inodes())
    base = [0] + [w.size(i) for i in range(1, w.n)]
    ctl = []
    t_start, wall_start = time.monotonic(), time.time()
    nd = w.start_daemon(shlex.split(os.environ.get("BENCH_RESTART_WRAP", "")))
    threading.Thread(target=answering, args=(w, t_start, ctl), daemon=True).start()
    t_all, grown = all_grown(w, nd, base, t_start)
    wait_for(lambda: ctl or time.monotonic() - t_start > DEADLINE_S, DEADLINE_S + 5, "a control answer")
    first = w.probe.first_read_after(t_start)
    if nd.poll() is not None:
        raise OSError("the new vsockmuxd exited %d" % nd.returncode)
    if grown == w.n - 1:
        time.sleep(1.0)
    watch.join()

    def ms(t):
        return (t - t_start) * 1000 if t else float("nan")

    return dict(ctl=ms(ctl[0] if ctl else None), probe=ms(first), all=ms(t_all), grown=grown,
                gap=w.probe.longest_gap(first, first + 1.0) if first else float("nan"),
                before=w.probe.longest_gap(t_kill - 1.0, t_kill), down=(t_start - t_kill) * 1000,
                teardown=(gone[0] - t_dead) * 1000, listeners=len(inodes), still=still,
                log=log_marks(w.daemon_log(w.daemons), wall_start), refused=refusal(w))


def print_restart(f, n, kind, setup_s):
    print("B13 SIGKILL and restart, %d processes writing to %s endpoints (set up in %.0f s)" % (n, kind, setup_s))
    print("  (a) start -> control socket answers   %.0f ms" % f["ctl"])
    print("  (b) start -> first probe byte         %.0f ms" % f["probe"])
    print("  (c) start -> every stream grown       %.0f ms   (target <= 1000 ms; %d of %d grew)" %
          (f["all"], f["grown"], n - 1))
    print("  (d) longest probe gap after its first byte %.1f ms (steady before the kill %.1f ms)" %
          (f["gap"], f["before"]))
    print("  daemon down (kill -> start)           %.0f ms; the dead daemon's %d listeners outlived it by %.0f ms"
          " (%d still listening at the start)" % (f["down"], f["listeners"], f["teardown"], f["still"]))
    print("  the new daemon's log from its start: %s" % f["log"])


def check_outputs(w, fifo):
    """Exactly once in order per file endpoint, at least once with no gap per fifo and the probe."""
    probe_ok, probe_lines, probe_dup = at_least_once(w.probe.data())
    if fifo:
        checks = [at_least_once(d) for d in w.outputs()]
        out_ok, dup = all(c[0] for c in checks), sum(c[2] for c in checks)
    else:
        out_ok, dup = all(sequence_ok(d)[0] for d in w.outputs()), 0
    print("  %s endpoints %s: %s%s; probe at least once: %s (%d lines, %d bytes again, %d connections)" %
          ("fifo" if fifo else "file", "at least once, no gap" if fifo else "exactly once, in order",
           "yes" if out_ok else "NO", " (%d bytes again)" % dup if fifo else "", "yes" if probe_ok else "NO",
           probe_lines, probe_dup, len(w.probe.conns)))
    return out_ok and probe_ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build", help="the meson build directory")
    ap.add_argument("--processes", type=int, default=1000)
    ap.add_argument("--fifo", action="store_true", help="fifo endpoints read by a reader process")
    ap.add_argument("--wait-teardown", action="store_true",
                    help="start the new daemon only once the dead one's listeners are gone (see README)")
    ap.add_argument("--vsockmuxd", help="the daemon to run, both times (default: the build's), to compare two")
    args = ap.parse_args()
    n = args.processes
    w = Writers(args.build, n, "rstvm", "vsockmux-bench-rst-", fifo=args.fifo, stop_batch=STOP_BATCH,
                log_level="info", daemon=args.vsockmuxd)
    try:
        t = time.monotonic()
        w.start()
        setup_s = time.monotonic() - t
        time.sleep(1.0)
        f = restart(w, args.wait_teardown)
        if f["refused"]:
            print("B13: the new daemon did not recover the VM: %s\n  (%.0f ms after the kill; the dead daemon's %d "
                  "listeners outlived it by %.0f ms, %d still listening at the start)" %
                  (f["refused"], f["down"], f["listeners"], f["teardown"], f["still"]))
            return 1
        print_restart(f, n, "fifo" if args.fifo else "file", setup_s)
        if f["grown"] != n - 1:
            print("B13: not every stream came back within %d s" % DEADLINE_S)
            return 1
        st = w.sim_stats()
        print("  bridge connects %s, stdio redials %s   (want 2, >= %d); OUTPUT LOST lines in the sim's log: %d" %
              (st.get("bridge_connects"), st.get("stdio_redials"), 2 * n, w.sim_lost()))
        waits = stop_and_wait(w)
        codes = w.stop_writers()
        codes_ok = len(codes) == n and all(c == "0" for c in codes) and all(c == 0 for c, _ in waits)
        out_ok = check_outputs(w, args.fifo)
        print("  every exit code 0 (exit files and vsockmux wait): %s" % ("yes" if codes_ok else "NO"))
        if not codes_ok:
            bad = [(pid, c) for pid, c in zip(w.pids, waits) if c[0] != 0]
            print("  exit files %s; vsockmux wait: %d not 0, e.g. %s" % (sorted(set(codes)), len(bad), bad[:3]))
        return 0 if out_ok and codes_ok else 1
    finally:
        w.close()


if __name__ == "__main__":
    sys.exit(main())
