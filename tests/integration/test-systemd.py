#!/usr/bin/env python3
"""vsockmuxd under systemd's protocol, with this test playing systemd: it owns NOTIFY_SOCKET (a
datagram socket that receives READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1) and binds
the control socket itself, handing it over as fd 3 through LISTEN_FDS, LISTEN_PID and
LISTEN_FDNAMES, as vsockmuxd.socket does (systemd_mock.py: PID 1 is not systemd here).

Usage: test-systemd.py DAEMON CLI SIM. Every wait is bounded (60 s) and nothing asserts how fast
anything happens."""
import os
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_env  # noqa: E402
from systemd_mock import Daemon, cli, listening_socket  # noqa: E402


def test_activated(daemon, cli_path, sim, tmp):
    """The daemon serves the socket it was handed (never binds its own), says READY=1 with its
    counts, pets the watchdog from its loop, survives SIGHUP reopening its log, and says
    STOPPING=1 on SIGTERM; the socket file stays: it is systemd's."""
    sock = os.path.join(tmp, "ctl.sock")
    lsock = listening_socket(sock)
    ino = os.stat(sock).st_ino
    d = Daemon(daemon, tmp, lsock, watchdog_usec=200000, args=["--socket", sock])
    lsock.close()
    try:
        ready = d.expect(lambda f: f.get("READY") == "1", "READY=1")
        assert "0 VMs" in ready.get("STATUS", ""), ready
        assert os.stat(sock).st_ino == ino, "the daemon replaced the socket it was handed"
        assert "socket-activated" in d.read_log(), d.read_log()
        # Two pets: the loop's timer keeps running, not a one-off at start.
        d.expect(lambda f: f.get("WATCHDOG") == "1", "WATCHDOG=1")
        d.expect(lambda f: f.get("WATCHDOG") == "1", "a second WATCHDOG=1")

        hv = os.path.join(tmp, "vm1.hvsock")
        cli(cli_path, sock, "vm", "add", "vm1", "--hvsock", hv)
        simp = subprocess.Popen([sim, "--hvsock", hv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            d.expect(lambda f: f.get("STATUS", "").startswith("1 VMs"), "STATUS= counting the VM")
            # SIGHUP: the log was rotated away; the daemon reopens the path and keeps serving.
            os.rename(d.log, d.log + ".1")
            os.kill(d.pid, signal.SIGHUP)
            d.expect(lambda f: f.get("RELOADING") == "1", "RELOADING=1")
            d.expect(lambda f: f.get("READY") == "1", "READY=1 after the reload")
            assert "reopened the log" in d.read_log(), "log not reopened: %r" % d.read_log()
            out = cli(cli_path, sock, "vm", "ls", "--json").stdout
            assert '"vm1"' in out, out
            with open(d.log + ".1") as f:
                assert "SIGHUP" not in f.read(), "the rotated log was written to after SIGHUP"
        finally:
            simp.kill()
            simp.wait()
        os.kill(d.pid, signal.SIGTERM)
        d.expect(lambda f: f.get("STOPPING") == "1", "STOPPING=1")
        code = d.wait()
        assert code == 0, "exit %d\n%s" % (code, d.read_log())
        assert os.stat(sock).st_ino == ino, "the daemon removed or replaced the socket it was handed"
    finally:
        d.kill()


def test_not_activated(daemon, cli_path, sim, tmp):
    """Without LISTEN_FDS the daemon binds --socket itself and still notifies; no watchdog
    unless asked."""
    sock = os.path.join(tmp, "own.sock")
    d = Daemon(daemon, tmp, None, args=["--socket", sock])
    try:
        d.expect(lambda f: f.get("READY") == "1", "READY=1")
        assert not any("WATCHDOG" in m for m in d.messages), d.messages
        cli(cli_path, sock, "vm", "ls")
        os.kill(d.pid, signal.SIGTERM)
        assert d.wait() == 0
        assert not os.path.exists(sock), "the daemon left its own socket behind"
    finally:
        d.kill()


def test_bad_fds(daemon, cli_path, sim, tmp):
    """A socket named other than "control" (a unit mistake), or one that is not a listening
    stream socket: a clear error and exit 1, never serving something else."""
    a = listening_socket(os.path.join(tmp, "a.sock"))
    d = Daemon(daemon, tmp, a, fdnames="metrics", args=["--socket", os.path.join(tmp, "x.sock")])
    a.close()
    try:
        code = d.wait()
        assert code == 1, "exit %d\n%s" % (code, d.read_log())
        assert "socket activation" in d.read_log(), d.read_log()
        assert not os.path.exists(os.path.join(tmp, "x.sock"))
    finally:
        d.kill()
    b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.bind(os.path.join(tmp, "b.sock"))
    d = Daemon(daemon, tmp, b, args=["--socket", os.path.join(tmp, "x.sock")])
    b.close()
    try:
        code = d.wait()
        assert code == 1, "exit %d\n%s" % (code, d.read_log())
        assert "not a listening Unix stream socket" in d.read_log(), d.read_log()
    finally:
        d.kill()


def recv_from(d, pred, what):
    """Like Daemon.expect, with the sender's pid (SO_PASSCRED): returns (fields, pid)."""
    fields, pid, _ = d.expect_from(pred, what)
    return fields, pid


def test_upgrade(daemon, cli_path, sim, tmp):
    """vsockmux upgrade under systemd: the old daemon (the main pid) sends MAINPID= naming the new
    one, which then pets the watchdog itself (WATCHDOG_PID named the old one) and serves the same
    socket-activated socket; NotifyAccess=main holds throughout. The test is the subreaper the
    new daemon is orphaned to."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
    sock = os.path.join(tmp, "ctl.sock")
    lsock = listening_socket(sock)
    ino = os.stat(sock).st_ino
    d = Daemon(daemon, tmp, lsock, watchdog_usec=200000, args=["--socket", sock], watchdog_pid=True)
    lsock.close()
    new = None
    try:
        d.expect(lambda f: f.get("READY") == "1", "READY=1")
        old = d.pid
        out = cli(cli_path, sock, "upgrade").stdout
        assert "serves as pid" in out, out
        fields, sender = recv_from(d, lambda f: "MAINPID" in f, "MAINPID=")
        new = int(fields["MAINPID"])
        assert sender == old, "MAINPID= came from pid %r, not the main pid %d" % (sender, old)
        assert new != old and ("pid %d" % new) in out, (new, out)
        assert d.wait() == 0
        _, sender = recv_from(d, lambda f: f.get("WATCHDOG") == "1", "WATCHDOG=1 from the new daemon")
        while sender != new:
            _, sender = recv_from(d, lambda f: f.get("WATCHDOG") == "1", "WATCHDOG=1 from the new daemon")
        assert "vm1" not in cli(cli_path, sock, "vm", "ls").stdout
        assert os.stat(sock).st_ino == ino, "the upgrade replaced the socket systemd handed over"
        os.kill(new, signal.SIGTERM)
        _, sender = recv_from(d, lambda f: f.get("STOPPING") == "1", "STOPPING=1")
        assert sender == new, sender
        _, status = os.waitpid(new, 0)
        new = None
        assert os.waitstatus_to_exitcode(status) == 0, d.read_log()
    finally:
        if new:
            os.kill(new, signal.SIGKILL)
            os.waitpid(new, 0)
        d.kill()


def main():
    return daemon_env.run_tests_in_tmp(__doc__, 3, (test_activated, test_not_activated, test_bad_fds, test_upgrade),
                                       "vsockmux-systemd.")


if __name__ == "__main__":
    sys.exit(main())
