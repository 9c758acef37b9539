"""tests/integration/systemd_mock.py: systemd's service manager played by a test, for the tests of
vsockmuxd under systemd. systemd itself cannot run the unit here (PID 1 is not systemd), so this
plays its side of the protocol as src/core/service.c does:

- NOTIFY_SOCKET, a datagram socket with SO_PASSCRED: READY=1, STATUS=, WATCHDOG=1, STOPPING=1,
  MAINPID= (followed: NotifyAccess=main then accepts the new main pid's messages);
- socket activation: the sockets passed as fd 3, 4, ... with LISTEN_FDS, LISTEN_PID and
  LISTEN_FDNAMES (names joined by ':');
- the fd store (FileDescriptorStoreMax=): FDSTORE=1 with FDNAME= keeps the fds a message carries
  (SCM_RIGHTS) when the main pid sends them, polls them unless FDPOLL=0 (a hung-up fd is dropped,
  as systemd's on_fd_store_io() does), passes them to the next start after the sockets, and
  FDSTOREREMOVE=1 with FDNAME= closes them. Fds that come without FDSTORE=1, from another pid or
  over the store's maximum are closed, as systemd does.

Every wait is bounded (daemon_env.WAIT_S) and nothing asserts how fast anything happens."""
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import time

import daemon_env

WAIT_S = daemon_env.WAIT_S
# The most fds one notification carries that we read (systemd reads up to 768 per message).
MAX_FDS = 16


def parse(data):
    return dict(line.split("=", 1) for line in data.split("\n") if "=" in line)


def hung_up(fd):
    p = select.poll()
    p.register(fd, 0)
    return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in p.poll(0))


def fdname_valid(name):
    """systemd's fdname_is_valid(): at most 255 printable ASCII characters, no ':'."""
    return len(name) <= 255 and all(" " <= c < "\x7f" and c != ":" for c in name)


class Manager:
    """The service manager's notification socket and fd store, across the starts of one service
    (one unit: a restart keeps the store, as `systemctl restart` does)."""

    def __init__(self, tmp, fdstore_max=1):
        self.notify_path = os.path.join(tmp, "notify")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.notify.settimeout(WAIT_S)
        self.fdstore_max = fdstore_max
        self.main_pid = None
        self.messages = []   # every notification's fields, in order
        self.received = []   # (fields, sender pid, number of fds) for each
        self.store = []      # [name, fd, polled], the newest first
        self.dropped = []    # (name or None, why) for each fd not stored

    def _drop(self, fds, name, why):
        for fd in fds:
            os.close(fd)
            self.dropped.append((name, why))

    def _poll_store(self):
        """What systemd's event loop would have seen by now: a polled fd that hung up goes."""
        for entry in list(self.store):
            name, fd, poll = entry
            if poll and hung_up(fd):
                self.store.remove(entry)
                self._drop([fd], name, "hung up (polled: no FDPOLL=0)")

    def recv(self, deadline):
        """One notification, acted on as systemd does: (fields, sender pid, fds received), or
        None at the deadline."""
        if self.notify.fileno() < 0:
            return None
        self.notify.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            # MSG_CMSG_CLOEXEC, as systemd reads them: a start gets a stored fd only as passed.
            data, anc, _, _ = self.notify.recvmsg(4096, socket.CMSG_SPACE(12) + socket.CMSG_SPACE(4 * MAX_FDS),
                                                  socket.MSG_CMSG_CLOEXEC)
        except socket.timeout:
            return None
        pid, fds = None, []
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
            elif level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += list(struct.unpack("%di" % (len(payload) // 4), payload[:len(payload) // 4 * 4]))
        fields = parse(data.decode())
        self.messages.append(fields)
        self.received.append((fields, pid, len(fds)))
        main = self.main_pid is None or pid == self.main_pid
        name = fields.get("FDNAME")
        if name is None or not fdname_valid(name):
            name = "stored"  # systemd: "Passed FDNAME= name is invalid, ignoring."
        if fds and not main:
            self._drop(fds, name, "from pid %r, not the main pid %r (NotifyAccess=main)" % (pid, self.main_pid))
        elif fds and fields.get("FDSTORE") != "1":
            self._drop(fds, name, "fds without FDSTORE=1")
        elif fds:
            for fd in fds:
                if len(self.store) >= self.fdstore_max:
                    self._drop([fd], name, "over FileDescriptorStoreMax=%d" % self.fdstore_max)
                else:
                    # LIST_PREPEND: the newest first, in the store and as passed.
                    self.store.insert(0, [name, fd, fields.get("FDPOLL") != "0"])
        if main and fields.get("FDSTOREREMOVE") == "1" and "FDNAME" in fields:
            for entry in [e for e in self.store if e[0] == fields["FDNAME"]]:
                self.store.remove(entry)
                os.close(entry[1])
        if main and "MAINPID" in fields:
            self.main_pid = int(fields["MAINPID"])
        return fields, pid, fds

    def expect_from(self, pred, what, detail=lambda: "", exited=lambda: None):
        """Reads notifications until one satisfies pred; returns (fields, sender pid, fds received
        with it); fails after WAIT_S, or once exited() says the sender is gone (its exit code)
        with nothing more queued."""
        deadline = time.monotonic() + WAIT_S
        while True:
            now = time.monotonic()
            got = self.recv(min(deadline, now + 0.25))
            if got is None:
                code = exited()
                if code is not None and self.recv(time.monotonic()) is None:
                    raise AssertionError("no notification with %s: vsockmuxd exited %d; got %r\n%s"
                                         % (what, code, self.messages[-10:], detail()))
                if time.monotonic() >= deadline:
                    raise AssertionError("no notification with %s; got %r\n%s"
                                         % (what, self.messages[-10:], detail()))
                continue
            if pred(got[0]):
                return got

    def drain(self):
        """Acts on every notification already queued (all of a service that exited)."""
        while self.recv(time.monotonic()) is not None:
            pass

    def flush(self):
        """What `systemctl stop` does to the store (the service goes inactive): every fd closed."""
        for entry in self.store:
            os.close(entry[1])
        self.store = []

    def stored(self, name):
        self._poll_store()
        return [e[1] for e in self.store if e[0] == name]

    def put(self, fd, name):
        """An fd in the store as if an earlier start had left it there (a copy: the caller keeps
        its own)."""
        self.store.insert(0, [name, os.dup(fd), False])

    def passed_fds(self, listen=()):
        """What a start passes: the unit's sockets (fd, name), then the fd store, as systemd's
        service_collect_fds() orders them."""
        self._poll_store()
        return list(listen) + [(e[1], e[0]) for e in self.store]

    def close(self):
        self.flush()
        if self.notify.fileno() < 0:
            return
        self.notify.close()
        try:
            os.unlink(self.notify_path)
        except FileNotFoundError:
            pass


class Daemon:
    """One start of the service: vsockmuxd as systemd runs it, with NOTIFY_SOCKET, the sockets in
    listen ((socket or fd, name) pairs) and whatever the manager's fd store holds."""

    def __init__(self, daemon, tmp, listen_sock=None, fdnames="control", watchdog_usec=None, args=(),
                 watchdog_pid=False, manager=None, listen=None, log=None, state_dir=None):
        self.tmp = tmp
        self.own_manager = manager is None
        self.manager = manager or Manager(tmp)
        self.notify = self.manager.notify
        self.messages = self.manager.messages
        self.log = log or os.path.join(tmp, "daemon.log")
        if listen is None:
            listen = [] if listen_sock is None else [(listen_sock, fdnames)]
        passed = self.manager.passed_fds([(s if isinstance(s, int) else s.fileno(), n) for s, n in listen])
        self.passed_names = [n for _, n in passed]
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = self.manager.notify_path
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        argv = [daemon, "--state-dir", state_dir or os.path.join(tmp, "state"), "--hvsock-root", tmp,
                "--log-file", self.log] + list(args)
        pid = os.fork()
        if pid == 0:
            try:
                # Above every target first, so that no dup2 overwrites a source not yet moved.
                high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3 + len(passed)) for fd, _ in passed]
                for i, fd in enumerate(high):
                    os.dup2(fd, 3 + i, inheritable=True)
                if passed:
                    env["LISTEN_FDS"] = str(len(passed))
                    env["LISTEN_PID"] = str(os.getpid())
                    if any(n is not None for _, n in passed):
                        env["LISTEN_FDNAMES"] = ":".join(n or "unknown" for _, n in passed)
                if watchdog_pid:
                    env["WATCHDOG_PID"] = str(os.getpid())
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.pid = pid
        self.status = None
        self.manager.main_pid = pid

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def expect_from(self, pred, what):
        """Reads notifications until one satisfies pred: (fields, sender pid, fds it carried)."""
        return self.manager.expect_from(pred, what, lambda: "log:\n" + self.read_log(), self.exited)

    def exited(self):
        """The exit code once the process ended (reaping it), else None; None also once reaped
        by wait() (a live upgrade's messages then come from the new daemon)."""
        if not self.pid:
            return None
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if not pid:
            return None
        self.pid = None
        self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def expect(self, pred, what):
        """Reads notifications until one satisfies pred; fails after WAIT_S."""
        return self.expect_from(pred, what)[0]

    def wait(self):
        if not self.pid and self.status is not None:
            return self.status
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = None
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            time.sleep(0.05)
        raise AssertionError("vsockmuxd did not exit\n" + self.read_log())

    def kill(self):
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None
        if self.own_manager:
            self.manager.close()


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
