"""What B12 (upgrade.py) and B13 (restart.py) share: vsockmuxd with --state-dir and --exit-dir,
the real simulator (vsockmux-sim --stats) as its guest, and N bench-tick writers started by
bench-ctl exec (32 in flight). Process 0, the probe, writes its line number every 1 ms to a Unix
socket this module listens on and timestamps; the others every 200 ms to an endpoint each (a
file, or with fifo=True a fifo a reader process copies to that file).
"""
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

PROBE_US = 1000
OTHERS_US = 200000


def split_lines(data):
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def sequence_ok(data):
    """Exactly once, in order: the lines are 0, 1, 2, ... Returns (ok, lines)."""
    lines = split_lines(data)
    return all(line == str(i).encode() for i, line in enumerate(lines)), len(lines)


def at_least_once(data):
    """At least once, no gap: each line is the next one or a step back to one already seen (a
    replay after a reconnect). Returns (ok, distinct lines, duplicated bytes)."""
    want, dup = 0, 0
    for line in split_lines(data):
        if not line.isdigit() or int(line) > want:
            return False, want, dup
        if int(line) < want:
            dup += len(line) + 1
        else:
            want += 1
    return True, want, dup


class Probe:
    """The probe's stdout: a Unix socket that timestamps every read. A restart dials it again,
    so it accepts every connection; conns holds each connection's bytes in order."""

    def __init__(self, path):
        self.path, self.reads, self.conns = path, [], []
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(path)
        self.lsock.listen(4)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            data = bytearray()
            self.conns.append(data)
            threading.Thread(target=self._read, args=(c, data), daemon=True).start()

    def _read(self, c, data):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                self.reads.append(time.monotonic())
                data.extend(d)

    def data(self):
        return b"".join(bytes(d) for d in self.conns)

    def first_read_after(self, t):
        return next((x for x in self.reads if x > t), None)

    def longest_gap(self, lo, hi):
        ts = [x for x in self.reads if lo <= x <= hi]
        return max((b - a for a, b in zip(ts, ts[1:])), default=float("nan")) * 1000


FIFO_READER = r"""
import os, select, signal, sys
fifos, copies = sys.argv[1], sys.argv[2]
names = sys.stdin.read().split()
fds = {}
for n in names:
    r = os.open(os.path.join(fifos, n), os.O_RDONLY | os.O_NONBLOCK)
    # Our own writer keeps the fifo from reporting a hang-up while no daemon has it open.
    os.open(os.path.join(fifos, n), os.O_WRONLY | os.O_NONBLOCK)
    fds[r] = open(os.path.join(copies, n), "ab", buffering=0)
stopping = []
# SIGTERM: every writer exited and its output drained; copy what is left in the pipes and exit.
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
print("ready", flush=True)
poll = select.poll()
for r in fds:
    poll.register(r, select.POLLIN)


def copy(r):
    while True:
        try:
            d = os.read(r, 65536)
        except BlockingIOError:
            return
        if not d:
            return
        fds[r].write(d)


while not stopping:
    for r, _ in poll.poll(100):
        copy(r)
for r in fds:
    copy(r)
"""


class Writers:
    def __init__(self, build, n, vm, prefix, fifo=False, stop_batch=0, log_level="warn", daemon=None):
        b = os.path.abspath(build)
        self.bins = {"vsockmuxd": os.path.abspath(daemon) if daemon else b + "/daemon/vsockmuxd", "vsockmux": b + "/cli/vsockmux",
                     "vsockmux-sim": b + "/sim/vsockmux-sim", "bench-tick": b + "/bench/bench-tick",
                     "bench-ctl": b + "/bench/bench-ctl"}
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self.n, self.vm, self.fifo, self.stop_batch = n, vm, fifo, stop_batch
        self.tmp = tempfile.mkdtemp(prefix=prefix, dir=TMP_BASE)
        t = self.tmp
        self.sock, self.uds, self.stats_path = t + "/ctl.sock", t + "/vm.sock", t + "/sim.stats"
        self.stop_file, self.out, self.exits = t + "/stop", t + "/out", t + "/exits"
        self.sim_log = t + "/sim.log"
        os.mkdir(self.out)
        os.mkdir(self.exits)
        self.daemon_argv = [self.bins["vsockmuxd"], "--socket", self.sock, "--state-dir", t + "/state",
                            "--hvsock-root", t, "--exit-dir", self.exits,
                            "--log-level", os.environ.get("BENCH_DAEMON_LOG", log_level)]
        self.procs, self.pids, self.daemons, self.reader = [], [], 0, None
        self.probe = Probe(t + "/probe.sock")

    def stop_path(self, i):
        """Process i's stop file: one for all, or with stop_batch one per stop_batch processes."""
        return "%s-%d" % (self.stop_file, i // self.stop_batch) if self.stop_batch else self.stop_file

    def out_path(self, i):
        return "%s/%d" % (self.out, i)

    def daemon_log(self, k):
        return "%s/vsockmuxd-%d.log" % (self.tmp, k)

    def start_daemon(self, wrap=(), env=None, stored_fd=None):
        """A vsockmuxd with the same arguments each time (wrap: perf, strace), its log vsockmuxd-K.log.
        stored_fd: what a stop left in systemd's fd store, passed as systemd passes it (fd 3,
        LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID: the shell's pid, which exec keeps)."""
        self.daemons += 1
        argv, fds = list(wrap) + self.daemon_argv, ()
        if stored_fd is not None:
            argv = ["/bin/sh", "-c", 'exec 3<&%d %d<&-; LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=vsockmux-handover '
                    'exec "$@"' % (stored_fd, stored_fd), "sh"] + argv
            fds = (stored_fd,)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(self.daemon_log(self.daemons), "w"), close_fds=True, pass_fds=fds,
                             env=env)
        self.procs.append(p)
        return p

    def _start_fifo_reader(self):
        fifos = self.tmp + "/fifos"
        os.mkdir(fifos)
        for i in range(1, self.n):
            os.mkfifo("%s/%d" % (fifos, i))
        self.reader = subprocess.Popen([sys.executable, "-c", FIFO_READER, fifos, self.out],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        self.procs.append(self.reader)
        self.reader.stdin.write(" ".join(str(i) for i in range(1, self.n)).encode())
        self.reader.stdin.close()
        if self.reader.stdout.readline() != b"ready\n":
            raise OSError("the fifo reader did not start")
        return fifos

    def start(self, env=None):
        """Daemon, VM, simulator, writers; returns once every writer's first line arrived."""
        d = self.start_daemon(env=env)
        wait_for(lambda: os.path.exists(self.sock) or d.poll() is not None, 30, "vsockmuxd listening")
        cli(self.bins, self.sock, "vm", "add", self.vm, "--hvsock", self.uds)
        self.procs.append(subprocess.Popen([self.bins["vsockmux-sim"], "--hvsock", self.uds, "--stats",
                                            self.stats_path, "--log-level", "error"],
                                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=open(self.sim_log, "w"), close_fds=True))
        dest = self._start_fifo_reader() if self.fifo else self.out
        with open(self.tmp + "/jobs", "w") as f:
            for i in range(self.n):
                f.write("- %s - %s %d %s\n" % (self.probe.path if i == 0 else "%s/%d" % (dest, i),
                                               self.bins["bench-tick"], PROBE_US if i == 0 else OTHERS_US,
                                               self.stop_path(i)))
        r = subprocess.run([self.bins["bench-ctl"], "exec", "--socket", self.sock, "--vm", self.vm, "--jobs",
                            self.tmp + "/jobs", "--parallel", "32"], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise OSError("bench-ctl exec: " + r.stderr.strip()[-300:])
        self.pids = [int(x) for x in r.stdout.split()]
        wait_for(lambda: self.probe.reads and all(self.size(i) > 0 for i in range(1, self.n)), 300,
                 "every process's first line")

    def size(self, i):
        try:
            return os.path.getsize(self.out_path(i))
        except OSError:
            return 0

    def sim_stats(self):
        with open(self.stats_path) as f:
            return dict(line.split() for line in f if line.strip())

    def sim_lost(self):
        """The simulator's OUTPUT LOST lines: a host that came back behind its replay buffer."""
        with open(self.sim_log, errors="replace") as f:
            return sum("OUTPUT LOST" in line for line in f)

    def stop_writers(self):
        """Every writer stops within its interval; the daemon writes each exit file (conmon's
        --exit-dir) once its output drained. Returns the exit files' contents."""
        for i in range(self.n):
            open(self.stop_path(i), "w").close()
        wait_for(lambda: len(os.listdir(self.exits)) >= self.n, 120, "every exit file")
        codes = []
        for name in os.listdir(self.exits):
            with open(os.path.join(self.exits, name)) as f:
                codes.append(f.read().strip())
        if self.reader:
            # What the daemon wrote to a fifo before the exit file is in its pipe or copied.
            self.reader.terminate()
            self.reader.wait(timeout=30)
        return codes

    def outputs(self):
        return [open(self.out_path(i), "rb").read() for i in range(1, self.n)]

    def close(self, extra_pids=()):
        for pid in extra_pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.probe.lsock.close()
        if os.environ.get("BENCH_KEEP"):
            print("kept " + self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
