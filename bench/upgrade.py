#!/usr/bin/env python3
"""B12 (issue 15): a live upgrade with N processes writing. The guest is the real simulator
(vsockmux-sim, --stats), which runs N bench-tick writers (bench-ctl exec, 32 in flight): process 0,
the probe, writes its line number every 1 ms to a Unix socket this script listens on and
timestamps; the others every 200 ms to file endpoints (bench/writers.py). After a steady second,
`vsockmux upgrade` moves every VM to a new vsockmuxd live. Reported: the upgrade call's time, the
longest gap between two reads of the probe's stream around the upgrade (and, for comparison, in
the second before), the simulator's bridge connections and stdio redials (want 1 and 0). Then
every writer is stopped, and each process's output must be its line numbers exactly once, in
order, and every exit code 0.

With --fdstore, B16: a restart through systemd's fd store instead. This script plays systemd (it
cannot run here: PID 1 is not systemd): it owns NOTIFY_SOCKET, starts vsockmuxd --fdstore, sends
it SIGTERM, receives the FDSTORE=1 socket, waits for the old daemon to exit, and starts the next
one with that socket as systemd would (fd 3, LISTEN_FDNAMES=vsockmux-handover). Reported: stop to
exit, exit to READY=1, and the same gaps, counts and checks.

    bench/upgrade.py --build build [--processes 1000] [--fdstore]
"""
import signal
import socket
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from writers import Writers, sequence_ok  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build", help="the meson build directory")
    ap.add_argument("--processes", type=int, default=1000)
    ap.add_argument("--fdstore", action="store_true", help="B16: a restart through systemd's fd store")
    args = ap.parse_args()
    n = args.processes
    w = Writers(args.build, n, "upgvm", "vsockmux-bench-upg-")
    new_pid = None
    notify = None
    try:
        env = None
        if args.fdstore:
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify.bind(w.tmp + "/notify")
            notify.settimeout(120)
            env = dict(os.environ, NOTIFY_SOCKET=w.tmp + "/notify")
            w.daemon_argv.append("--fdstore")
        t = time.monotonic()
        w.start(env=env)
        setup_s = time.monotonic() - t
        time.sleep(1.0)
        t0 = time.monotonic()
        if args.fdstore:
            new_pid, stages = restart_through_store(w, notify, env)
        else:
            r = subprocess.run([w.bins["vsockmux"], "--socket", w.sock, "upgrade"], capture_output=True, text=True,
                               timeout=120)
            if r.returncode != 0:
                raise OSError("upgrade: " + r.stderr.strip())
            new_pid = int(r.stdout.rsplit("pid ", 1)[1])
        t1 = time.monotonic()
        time.sleep(1.0)
        gap = w.probe.longest_gap(t0 - 0.2, t1 + 0.5)
        before = w.probe.longest_gap(t0 - 1.0, t0)
        st = w.sim_stats()
        codes = w.stop_writers()
        codes_ok = len(codes) == n and all(c == "0" for c in codes)
        ok, probe_lines = sequence_ok(w.probe.data())
        ok = ok and len(w.probe.conns) == 1 and all(sequence_ok(d)[0] for d in w.outputs())
        if args.fdstore:
            print("B16 restart through systemd's fd store, %d processes writing (set up in %.0f s)" % (n, setup_s))
            print("  SIGTERM to exit %.1f ms, exit to READY=1 %.1f ms" % stages)
        else:
            print("B12 live upgrade, %d processes writing (set up in %.0f s)" % (n, setup_s))
            print("  upgrade call                %.1f ms" % ((t1 - t0) * 1000))
        print("  longest probe gap, upgrade  %.1f ms   (target <= 50 ms)" % gap)
        print("  longest probe gap, before   %.1f ms" % before)
        print("  bridge connects %s, stdio redials %s   (want 1, 0)" % (st.get("bridge_connects"), st.get("stdio_redials")))
        print("  output exactly once, in order: %s (probe %d lines); every exit code 0: %s" %
              ("yes" if ok else "NO", probe_lines, "yes" if codes_ok else "NO"))
        return 0 if ok and codes_ok and st.get("stdio_redials") == "0" and st.get("bridge_connects") == "1" else 1
    finally:
        w.close([new_pid] if new_pid else [])
        if notify:
            notify.close()


def expect(notify, key):
    """The next notification holding the line key, and the fds it carried."""
    while True:
        data, fds, _, _ = socket.recv_fds(notify, 4096, 8)
        if key in data.decode().split("\n"):
            return fds
        for fd in fds:
            os.close(fd)


def restart_through_store(w, notify, env):
    """SIGTERM, the stored socket, the old daemon's exit, the next daemon's READY=1."""
    old = w.procs[0]
    t0 = time.monotonic()
    old.send_signal(signal.SIGTERM)
    fds = expect(notify, "FDSTORE=1")
    if len(fds) != 1:
        raise OSError("FDSTORE=1 carried %d fds" % len(fds))
    if old.wait(timeout=60) != 0:
        raise OSError("the old daemon exited %d" % old.returncode)
    t1 = time.monotonic()
    new = w.start_daemon(env=env, stored_fd=fds[0])
    os.close(fds[0])
    expect(notify, "FDSTOREREMOVE=1")
    expect(notify, "READY=1")
    t2 = time.monotonic()
    return new.pid, ((t1 - t0) * 1000, (t2 - t1) * 1000)


if __name__ == "__main__":
    sys.exit(main())
