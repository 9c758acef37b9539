#!/usr/bin/python3
"""vsockmuxd --limits-file: its caps override the command line's, SIGHUP reads it again and
applies all of it or, for a file with a mistake, none of it; a key taken out of the file goes
back to the command line's value; the daemon never stops for a SIGHUP.

Usage: test-limits-reload.py DAEMON CLI SIM. Every wait is bounded (60 s) and waits for a log
line or a state, never for a time."""
import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_env  # noqa: E402


class Env(daemon_env.DaemonEnv):
    def __init__(self, daemon, cli, sim):
        super().__init__(daemon, cli, sim, "vsockmux-limits.",
                         ["--max-processes", "3", "--limits-file", "{tmp}/limits.conf"], before=self.write_first)

    def write_first(self, tmp):
        with open(os.path.join(tmp, "limits.conf"), "w") as f:
            f.write("# written by the test\nmax-processes = 1\n")

    def write(self, text):
        path = os.path.join(self.tmp, "limits.conf")
        with open(path + ".new", "w") as f:
            f.write(text)
        os.rename(path + ".new", path)

    def reload(self, expect):
        """SIGHUP, then wait for the new log line about the limits file that says expect."""
        def limit_lines():
            return [ln for ln in open(self.log).read().splitlines()
                    if "SIGHUP: limits from" in ln or "SIGHUP: --limits-file" in ln]
        seen = len(limit_lines())
        self.daemon.send_signal(signal.SIGHUP)
        lines = self.until(lambda: limit_lines()[seen:], "the SIGHUP's answer about the limits")
        assert len(lines) == 1 and expect in lines[0], (expect, lines)
        assert self.daemon.poll() is None, "vsockmuxd stopped on SIGHUP"
        return lines[0]

    def sleeper(self, check=True):
        return self.cli("exec", "vm1", "--detach", "--", "sleep", "1000", check=check)


def test_file_overrides_command_line_and_sighup_rereads_it(daemon, cli, sim):
    e = Env(daemon, cli, sim)
    try:
        e.vm_with_sim("vm1")
        e.sleeper()
        r = e.sleeper(check=False)
        assert r.returncode == 125 and "process" in r.stderr, ("the file's max-processes = 1 holds", r)

        e.write("max-processes = 2\n")
        e.reload("max-processes 1 -> 2")
        e.sleeper()
        r = e.sleeper(check=False)
        assert r.returncode == 125, ("max-processes = 2 holds after SIGHUP", r)

        # A mistake anywhere: none of the file is applied, the daemon serves on with what it had.
        e.write("max-processes = 5\nmax-vms = 0\n")
        line = e.reload("line 2")
        assert "max-vms" in line and "stay as they were" in line, line
        r = e.sleeper(check=False)
        assert r.returncode == 125, ("a refused file changed nothing", r)

        # max-processes taken out of the file: the command line's 3 again.
        e.write("max-vms = 8\n")
        e.reload("max-processes 2 -> 3")
        e.sleeper()
        r = e.sleeper(check=False)
        assert r.returncode == 125, ("the command line's max-processes 3 holds", r)
    finally:
        e.close()


def test_bad_file_at_start_is_refused_by_name(daemon, cli, sim):
    tmp = tempfile.mkdtemp(prefix="vsockmux-limits-bad.")
    path = os.path.join(tmp, "limits.conf")
    with open(path, "w") as f:
        f.write("max-processes = 1\nmax-bridge-frame = 4096\n")
    r = subprocess.run([daemon, "--socket", os.path.join(tmp, "s"), "--state-dir", os.path.join(tmp, "st"),
                        "--limits-file", path], capture_output=True, text=True, timeout=daemon_env.WAIT_S)
    assert r.returncode != 0, r
    assert "line 2: unknown key 'max-bridge-frame'" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(tmp, "s")), "a daemon that refused its limits must not serve"


def main():
    return daemon_env.run_tests(__doc__, (test_file_overrides_command_line_and_sighup_rereads_it, test_bad_file_at_start_is_refused_by_name))


if __name__ == "__main__":
    sys.exit(main())
