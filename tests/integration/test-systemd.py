#!/usr/bin/env python3
"""vsockmuxd under systemd's protocol, with this test playing systemd: it owns NOTIFY_SOCKET (a
datagram socket that receives READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1) and binds
the control socket itself, handing it over as fd 3 through LISTEN_FDS, LISTEN_PID and
LISTEN_FDNAMES, as vsockmuxd.socket does.

Usage: test-systemd.py DAEMON CLI SIM. Every wait is bounded (60 s) and nothing asserts how fast
anything happens."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

WAIT_S = 60


class Daemon:
    def __init__(self, daemon, tmp, listen_sock=None, fdnames="control", watchdog_usec=None, args=(),
                 watchdog_pid=False):
        self.tmp = tmp
        self.notify_path = os.path.join(tmp, "notify")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.settimeout(WAIT_S)
        self.log = os.path.join(tmp, "daemon.log")
        self.messages = []
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = self.notify_path
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        argv = [daemon, "--state-dir", os.path.join(tmp, "state"), "--hvsock-root", tmp, "--log-file", self.log] + list(args)
        pid = os.fork()
        if pid == 0:
            try:
                if listen_sock is not None:
                    if listen_sock.fileno() != 3:
                        os.dup2(listen_sock.fileno(), 3)
                    os.set_inheritable(3, True)
                    env["LISTEN_FDS"] = "1"
                    env["LISTEN_PID"] = str(os.getpid())
                    if fdnames is not None:
                        env["LISTEN_FDNAMES"] = fdnames
                if watchdog_pid:
                    env["WATCHDOG_PID"] = str(os.getpid())
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid = pid

    def expect(self, pred, what):
        """Reads notifications until one satisfies pred; fails after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                data = self.notify.recv(4096).decode()
            except socket.timeout:
                break
            fields = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
            self.messages.append(fields)
            if pred(fields):
                return fields
        raise AssertionError("no notification with %s; got %r\nlog:\n%s" % (what, self.messages[-10:], self.read_log()))

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def wait(self):
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = None
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        raise AssertionError("vsockmuxd did not exit\n" + self.read_log())

    def kill(self):
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None
        self.notify.close()


def cli(cli_path, sock, *args, check=True):
    r = subprocess.run([cli_path, "--socket", sock] + list(args), capture_output=True, text=True, timeout=WAIT_S)
    if check and r.returncode != 0:
        raise AssertionError("vsockmux %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def listening_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.chmod(path, 0o600)
    s.listen(64)
    return s


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
    os.unlink(os.path.join(tmp, "notify"))
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
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            data, anc, _, _ = d.notify.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            break
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = int.from_bytes(payload[0:4], sys.byteorder)
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
        d.messages.append(fields)
        if pred(fields):
            return fields, pid
    raise AssertionError("no notification with %s; got %r\nlog:\n%s" % (what, d.messages[-10:], d.read_log()))


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
    d.notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
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
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    daemon, cli_path, sim = sys.argv[1:]
    failed = 0
    for test in (test_activated, test_not_activated, test_bad_fds, test_upgrade):
        tmp = tempfile.mkdtemp(prefix="vsockmux-systemd.")
        try:
            test(daemon, cli_path, sim, tmp)
            print("ok", test.__name__)
        except Exception:
            failed += 1
            print("FAIL", test.__name__)
            traceback.print_exc()
        finally:
            if not os.environ.get("VSOCKMUX_INTEG_KEEP"):
                shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
