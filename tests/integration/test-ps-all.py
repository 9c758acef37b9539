#!/usr/bin/python3
"""`vsockmux ps --all`: every VM's processes in one list, each naming its VM, with when it started
(the guest answered its exec with a pid) and when it exited (its exit became known).

Usage: test-ps-all.py DAEMON CLI SIM. Every wait is bounded (60 s); nothing asserts a duration:
the times are only checked against the wall clock read around the commands that cause them."""
import datetime
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_env  # noqa: E402

WAIT_S = daemon_env.WAIT_S


class Env(daemon_env.DaemonEnv):
    def __init__(self, daemon, cli, sim):
        super().__init__(daemon, cli, sim, "vsockmux-ps-all.", ["--log-level", "debug"])

    def ps(self, *args):
        return json.loads(self.cli("ps", *args, "--json").stdout)


def utc_text(ns):
    return datetime.datetime.fromtimestamp(ns // 10**9, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_ps_all_lists_every_vm_with_start_and_exit_times(daemon, cli, sim):
    e = Env(daemon, cli, sim)
    try:
        e.vm_with_sim("vm1")
        e.vm_with_sim("vm2")
        e.vm_with_sim("idle")
        before = time.time_ns()
        e.cli("exec", "vm1", "--", "true")
        after_true = time.time_ns()
        sleeper = int(e.cli("exec", "vm2", "--detach", "--", "sleep", "1000").stdout.strip())
        after_sleep = time.time_ns()

        procs = e.ps("--all")
        by_vm = {p["vm"]: p for p in procs}
        assert sorted(p["vm"] for p in procs) == ["vm1", "vm2"], procs
        done, running = by_vm["vm1"], by_vm["vm2"]
        assert done["argv"] == ["true"] and done["state"] == "exited", done
        assert before <= done["started_ns"] <= done["exited_ns"] <= after_true, (before, done, after_true)
        assert running["pid"] == sleeper and running["state"] == "running", running
        assert after_true <= running["started_ns"] <= after_sleep, (after_true, running, after_sleep)
        assert "exited_ns" not in running, running

        # One VM's ps: only its processes, naming the VM too.
        assert [p["vm"] for p in e.ps("vm2")] == ["vm2"]
        assert e.ps("idle") == []

        # The table: a VM column only with --all; both the start and the exit time in UTC.
        table = e.cli("ps", "--all").stdout.splitlines()
        assert table[0].split()[0] == "VM" and "STARTED" in table[0] and "EXITED" in table[0], table
        row1 = [line for line in table if line.startswith("vm1 ")]
        assert len(row1) == 1 and utc_text(done["started_ns"]) in row1[0] and utc_text(done["exited_ns"]) in row1[0], \
            table
        row2 = [line for line in table if line.startswith("vm2 ")]
        assert len(row2) == 1 and utc_text(running["started_ns"]) in row2[0], table
        one = e.cli("ps", "vm1").stdout.splitlines()
        assert one[0].split()[0] == "PID" and "STARTED" in one[0], one

        # Its exit, once known, is stamped; its start stays what it was.
        e.cli("kill", "vm2", str(sleeper), "--signal", "KILL")
        e.cli("wait", "vm2", str(sleeper), check=False)
        after_kill = time.time_ns()
        gone = [p for p in e.ps("--all") if p["vm"] == "vm2"][0]
        assert gone["started_ns"] == running["started_ns"], (running, gone)
        assert after_sleep <= gone["exited_ns"] <= after_kill, (after_sleep, gone, after_kill)

        # --all names no VM; a VM is named or --all is given.
        for bad in (("ps", "--all", "vm1"), ("ps",), ("ps", "--every")):
            r = e.cli(*bad, check=False)
            assert r.returncode == 2 and r.stderr, (bad, r)
    finally:
        e.close()


def main():
    return daemon_env.run_tests(__doc__, (test_ps_all_lists_every_vm_with_start_and_exit_times,))


if __name__ == "__main__":
    sys.exit(main())
