#!/usr/bin/python3
"""`vsockmux events --since`: every event carries a sequence number; a reconnecting client replays
from the daemon's bounded ring what it missed, then goes on live; a --since older than the ring
gets an explicit events-dropped marker first, never silence.

Usage: test-events.py DAEMON CLI SIM. Every wait is bounded (60 s); nothing asserts a duration.
The end of a replay is found by making a live event happen and reading up to it."""
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_env  # noqa: E402

WAIT_S = daemon_env.WAIT_S
RING = 4


class Env(daemon_env.DaemonEnv):
    def __init__(self, daemon, cli, sim, args=()):
        super().__init__(daemon, cli, sim, "vsockmux-events.", ["--log-level", "debug"] + list(args))

    def events_calls(self):
        return open(self.log).read().count("calls vsockmux.v1.Control/Events")

    def run(self, vm="vm1"):
        """An attached exec: its started and exited events are published before it returns."""
        self.cli("exec", vm, "--", "true")


class Follower:
    """`vsockmux events --json ARGS` in the background, its lines collected as JSON."""

    def __init__(self, e, *args):
        self.e = e
        self.p = subprocess.Popen([e.cli_path, "--socket", e.sock, "events", "--json"] + list(args),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events = []
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            with self.lock:
                self.events.append(json.loads(line))

    def until_kind(self, kind, vm=None):
        """Every event up to and including the first of kind (for vm), once it arrived."""
        def have():
            with self.lock:
                for i, ev in enumerate(self.events):
                    if ev["kind"] == kind and (vm is None or ev.get("vm") == vm):
                        return self.events[:i + 1]
            return None
        return self.e.until(have, "a %s event from events %r (so far %r)" % (kind, self.p.args, self.events))

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(WAIT_S)


def replay_then_live(e, *args):
    """The events a --since replay yields, ended by a live VM_ADDED of a fresh VM."""
    subscribed = e.events_calls() + 1
    f = Follower(e, *args)
    try:
        # The live event only once the follower subscribed (the debug log says so): before, it
        # would be in the ring and so in the replay, pushing an older event out.
        e.until(lambda: e.events_calls() >= subscribed, "the follower's Events call")
        marker = "vm-live-%d" % time.monotonic_ns()
        e.cli("vm", "add", marker, "--hvsock", os.path.join(e.tmp, marker + ".hv"))
        got = f.until_kind("vm-added", vm=marker)
        e.cli("vm", "rm", marker)
        return got[:-1], got[-1]
    finally:
        f.stop()


def test_every_event_has_a_sequence_number_and_since_replays(daemon, cli, sim):
    e = Env(daemon, cli, sim, ["--events-ring", str(RING)])
    try:
        e.vm_with_sim("vm1")            # 1 vm-added, 2 bridge-connected
        e.run()                         # 3 process-started, 4 process-exited
        # Everything so far fits the ring: --since 0 replays it all, no marker.
        got, live = replay_then_live(e, "--since", "0")
        assert [ev["seq"] for ev in got] == [1, 2, 3, 4], got
        assert [ev["kind"] for ev in got] == ["vm-added", "bridge-connected", "process-started",
                                              "process-exited"], got
        assert live["seq"] == 5, live
        # 5, 6 were the live VM's added and removed; two more runs: 7..10. The ring holds 7..10.
        e.run()
        e.run()
        got, live = replay_then_live(e, "--since", "8")
        assert [ev["seq"] for ev in got] == [9, 10], got
        assert live["seq"] == 11, live
        # Older than the ring: a marker naming the gap (its seq the last one lost), then the rest.
        got, _ = replay_then_live(e, "--since", "2")
        assert got[0]["kind"] == "events-dropped", got
        assert "events 3 to" in got[0]["message"] and "--events-ring" in got[0]["message"], got[0]
        assert [ev["seq"] for ev in got[1:]] == list(range(got[0]["seq"] + 1, got[0]["seq"] + 1 + RING)), got
        # From the very start, by time: the same marker.
        got, _ = replay_then_live(e, "--since", "1h")
        assert got[0]["kind"] == "events-dropped" and "events 1 to" in got[0]["message"], got
        assert len(got) == 1 + RING, got
        # Past the last event (another daemon's numbering): said so, then all that is held.
        got, _ = replay_then_live(e, "--since", "100000")
        assert got[0]["kind"] == "events-dropped" and "past this daemon's last event" in got[0]["message"], got
        assert len(got) == 1 + RING, got
        # Without --since: live only, as before.
        got, live = replay_then_live(e)
        assert got == [], got
    finally:
        e.close()


def test_since_time_and_vm_filter(daemon, cli, sim):
    e = Env(daemon, cli, sim)
    try:
        e.vm_with_sim("vm1")
        e.vm_with_sim("vm2")
        e.run("vm1")
        # A time after every event so far (RFC 3339, whole seconds): nothing replayed, no marker.
        time_after = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2))
        got, _ = replay_then_live(e, "--since", time_after.strftime("%Y-%m-%dT%H:%M:%SZ"))
        assert got == [], got
        got, _ = replay_then_live(e, "--since", "@0")
        assert [ev["kind"] for ev in got][:2] == ["vm-added", "bridge-connected"], got
        assert all(ev["kind"] != "events-dropped" for ev in got), got
        # --vm: only that VM's events (the ring keeps them all).
        f = Follower(e, "--since", "0", "--vm", "vm1")
        try:
            e.run("vm1")
            got = f.until_kind("process-exited")
            got = f.until_kind("process-exited") if len(got) < 3 else got
            assert all(ev["vm"] == "vm1" for ev in got), got
        finally:
            f.stop()
        # A bad --since is a usage error naming the forms.
        for bad in ("yesterday", "-5", "5x", "2026-13-01T00:00:00Z", "@"):
            r = e.cli("events", "--since", bad, check=False)
            assert r.returncode == 2 and "--since" in r.stderr, (bad, r)
    finally:
        e.close()


def main():
    return daemon_env.run_tests(__doc__, (test_every_event_has_a_sequence_number_and_since_replays, test_since_time_and_vm_filter))


if __name__ == "__main__":
    sys.exit(main())
