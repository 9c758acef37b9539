#!/usr/bin/python3
"""bench/run.py: the vsockmux benchmark driver (standard library only).

Runs every scenario with every variant interleaved (A B C A B C ...), each figure the median of
--reps repetitions with min and max beside it, checks the targets from issue 7, prints a table,
writes bench/results/latest.json and bench/results/latest.png (gnuplot).

The measuring is done by bench-load (C): it owns the host endpoints, forks the guest load
generator, checks every byte of every stream and reads the relay's CPU from /proc/PID/stat.
"""

import argparse
import contextlib
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
BUILD_DIR = os.path.join(ROOT, "build-bench-run")
PORT_BASE = 10000
LOAD_TIMEOUT_S = 120
# Sockets and fifos live on tmpfs: on ext4, bind() after thousands of unlinks costs ~1.5 ms
# per socket (ext4's recently_deleted inode scan), which would dominate setup at 4,000 streams.
TMP_BASE = "/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp"


# ---- variants -------------------------------------------------------------------------------
#
# A variant turns a spec file (one line per stream: dir, port, guest path "<vm uds>_<port>",
# endpoint kind, endpoint path) into the processes that listen on the guest paths and relay each
# stream to its endpoint. The driver starts them after bench-load has created the endpoints and
# passes their pids back so bench-load can read their CPU and memory.

class Variant:
    direct = False  # the guest dials the endpoint itself: no relay (the ceiling)
    persistent = False  # started once per scenario and reused by every repetition

    def __init__(self, name, label):
        self.name = name
        self.label = label

    def pending(self, bins):
        """A reason this variant cannot run yet, or None."""
        return None

    def start(self, bins, spec_path, streams):
        return []

    def collect(self, procs, spec_path):
        """Extra figures read while the relay is still up (after bench-load finished)."""
        return {}

    def measured(self, procs):
        """The processes whose CPU and memory bench-load reads (the rest only help)."""
        return procs

    def diagnose(self, procs, spec_path):
        """What the variant's own logs say, for a failed repetition."""
        return ""


class Direct(Variant):
    direct = True


class EpollRelay(Variant):
    def __init__(self, name, label, flag):
        super().__init__(name, label)
        self.flag = flag

    def start(self, bins, spec_path, streams):
        return [spawn([bins["bench-epoll-relay"], self.flag, "--spec", spec_path])]


class Socat(Variant):
    """One socat per stream, which is what users do: `socat UNIX-LISTEN:path,fork ...`.

    Each listener forks a child per connection, so the relaying is done by one process per
    stream. Exec'ing a thousand socats takes 5-50 ms each on a busy 2-core machine, so they are
    started once per scenario and every repetition connects anew (a fresh fork per stream).
    bench-load counts the children's CPU (live children, then the parent's cutime/cstime).
    """

    persistent = True

    def __init__(self, name, label, extra):
        super().__init__(name, label)
        self.extra = extra

    def pending(self, bins):
        return None if shutil.which("socat") else "socat not installed"

    def start(self, bins, spec_path, streams):
        procs = []
        for s in streams:
            guest = "UNIX-LISTEN:%s,fork" % s["guest"]
            if s["kind"] == "fifo":
                endpoint = "OPEN:%s,wronly" % s["endpoint"]
            else:
                endpoint = "UNIX-CONNECT:" + s["endpoint"]
            # -u: left to right (guest -> endpoint); -U: right to left (endpoint -> guest).
            way = "-u" if s["dir"] == "from_guest" else "-U"
            procs.append(spawn(["socat"] + self.extra + [way, guest, endpoint]))
        return procs


def pool_rss_kb(pid, pool_bytes):
    """The resident part of the buffer pool: one fixed anonymous mapping of exactly the pool's
    size, a fixed cost rather than a per-stream one. Only a mapping of that size (give or take a
    page) counts: the smallest larger one may be the heap, which is per-stream memory. None when
    there is no such mapping (then nothing is subtracted: the pool is billed to the streams)."""
    pool_kb = pool_bytes // 1024
    best = None
    try:
        with open("/proc/%d/smaps" % pid) as f:
            size = None
            for line in f:
                if line.startswith("Size:"):
                    size = int(line.split()[1])
                elif line.startswith("Rss:") and size is not None and pool_kb <= size <= pool_kb + 4:
                    if best is None or size < best[0]:
                        best = (size, int(line.split()[1]))
    except OSError:
        pass
    return best[1] if best else None


class RelayAlone(Variant):
    """relay/ alone, no daemon: bench/relay-under-test (one io_uring loop, hybrid-vsock listeners
    on "<vm uds>_<port>", one relay stream per connection). A diagnostic row beside the real
    daemon path: the difference between the two is what the daemon adds around relay/."""

    def pending(self, bins):
        if "relay-under-test" not in bins:
            return "bench/relay-under-test not built (relay/ streams not landed yet)"
        return None

    def start(self, bins, spec_path, streams):
        # BENCH_WRAP="valgrind --tool=callgrind" profiles the relay (same pid, so CPU still counts).
        wrap = shlex.split(os.environ.get("BENCH_WRAP", ""))
        extra = shlex.split(os.environ.get("BENCH_RUT_ARGS", ""))  # e.g. "--buf-size 16384 --buf-count 4096"
        return [spawn(wrap + [bins["relay-under-test"], "--spec", spec_path, "--stats", spec_path + ".stats"]
                      + extra)]

    def collect(self, procs, spec_path):
        time.sleep(0.25)  # one more stats period: the file then describes the idle state
        try:
            with open(spec_path + ".stats") as f:
                st = json.load(f)
        except (OSError, ValueError):
            return {}
        out = dict(pool_bytes=st["pool_bytes"], relay_failed=st["failed"])
        if st.get("bytes_relayed"):
            out["spliced"] = st.get("bytes_spliced", 0) / st["bytes_relayed"]
        if "loop" in st:
            out["loop"] = st["loop"]
        rss = pool_rss_kb(procs[0].pid, st["pool_bytes"])
        if rss is not None:
            out["pool_rss_kb"] = rss
        return out


DAEMON_VM = "bench"
DAEMON_DEFAULT_MAX_PROCESSES = 4096  # vsockmuxd --max-processes, per VM


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise OSError("%s did not happen within %.0f s" % (what, timeout))
        time.sleep(0.005)


def start_daemon(bins, tmp, sock, tag="", extra=()):
    """vsockmuxd on a private control socket and state dir, hybrid-vsock paths confined to tmp."""
    log = open(os.path.join(tmp, "vsockmuxd%s.log" % tag), "w")
    wrap = shlex.split(os.environ.get("BENCH_WRAP", ""))
    p = subprocess.Popen(wrap + [bins["vsockmuxd"], "--socket", sock, "--state-dir", os.path.join(tmp, "state" + tag),
                                 "--hvsock-root", tmp, "--log-level", os.environ.get("BENCH_DAEMON_LOG", "warn")]
                         + list(extra) + shlex.split(os.environ.get("BENCH_DAEMON_ARGS", "")),  # e.g. "--no-record"
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, close_fds=True)
    log.close()
    try:
        wait_for(lambda: os.path.exists(sock) or p.poll() is not None, 30, "vsockmuxd listening")
        if p.poll() is not None:
            raise OSError("vsockmuxd exited %d" % p.returncode)
    except OSError:
        stop([p])
        raise
    return p


def cli(bins, sock, *args):
    r = subprocess.run([bins["vsockmux"], "--socket", sock] + list(args), capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise OSError("vsockmux %s: %s" % (" ".join(args[:2]), r.stderr.strip()[-300:]))
    return r.stdout


def tail(path, n=300):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:].strip()
    except OSError:
        return ""


class VsockmuxUnderTest(Variant):
    """THE daemon path: vsockmuxd and its real relay path, from guest socket to host endpoint.

    Per repetition: a fresh vsockmuxd (control socket and state dir in the spec's tmp dir,
    --hvsock-root confined to it), `vm add` with hybrid vsock "<tmp>/vm.sock", bench-guest
    answering the VM's bridge (negotiates without the stdio-resume extension, answers every
    ExecuteProcess with a fake pid and never reports an exit; no process is spawned), and
    bench-ctl issuing one Exec --detach per process over the control socket: --stdout <endpoint>
    for a from_guest stream, --stdin + --stdout for an echo pair. The daemon opens the endpoints
    (connects the Unix sockets / opens the fifos bench-load made), takes its own ports and
    listens on "<tmp>/vm.sock_<port>"; bench-ctl links each spec guest path to the port the
    guest was told, so bench-load's guest dials the daemon's real listeners unchanged.

    The execs run in the background while bench-load samples the daemon's "before" figures and
    its guest keeps dialing until the links exist: B7's per-stream memory therefore includes
    everything the daemon keeps per process (attach socket, stderr listener, bookkeeping).
    Only vsockmuxd's pid is handed to bench-load (CPU, RSS, threads).
    """

    def pending(self, bins):
        missing = [b for b in ("vsockmuxd", "vsockmux", "bench-guest", "bench-ctl") if b not in bins]
        return "not built: " + ", ".join(missing) if missing else None

    def start(self, bins, spec_path, streams):
        self.bins = bins
        tmp = os.path.dirname(spec_path)
        sock = os.path.join(tmp, "ctl.sock")
        uds = streams[0]["guest"].rsplit("_", 1)[0]
        # B15 puts 10,000 processes in one VM, over the default per-VM cap.
        extra = ["--max-processes", str(len(streams))] if len(streams) > DAEMON_DEFAULT_MAX_PROCESSES else []
        daemon = start_daemon(bins, tmp, sock, extra=extra)
        procs = [daemon]
        try:
            cli(bins, sock, "vm", "add", DAEMON_VM, "--hvsock", uds)
            ports = os.path.join(tmp, "ports")
            open(ports, "w").close()
            procs.append(subprocess.Popen([bins["bench-guest"], "--hvsock", uds, "--ports", ports],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=open(os.path.join(tmp, "guest.log"), "w"), close_fds=True))
            jobs = os.path.join(tmp, "jobs")
            with open(jobs, "w") as f:
                i = 0
                while i < len(streams):
                    s = streams[i]
                    if s["dir"] == "to_guest":  # an echo pair: this stdin, the next stream's stdout
                        f.write("%s %s - bench-stream %d %d\n" % (s["endpoint"], streams[i + 1]["endpoint"],
                                                                   self.link_id(i), self.link_id(i + 1)))
                        i += 2
                    else:
                        f.write("- %s - bench-stream - %d\n" % (s["endpoint"], self.link_id(i)))
                        i += 1
            procs.append(subprocess.Popen([bins["bench-ctl"], "exec", "--socket", sock, "--vm", DAEMON_VM,
                                           "--jobs", jobs, "--parallel", "8", "--spec", spec_path, "--ports", ports],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=open(os.path.join(tmp, "ctl.log"), "w"), close_fds=True))
        except (OSError, subprocess.SubprocessError):
            stop(procs)
            raise
        return procs

    def link_id(self, i):
        """Which spec stream's guest path dials the process made for stream i (smoke: crossed)."""
        return i

    def measured(self, procs):
        return procs[:1]

    def diagnose(self, procs, spec_path):
        tmp = os.path.dirname(spec_path)
        return "; ".join("%s: %s" % (n, t) for n in ("ctl.log", "guest.log", "vsockmuxd.log")
                         for t in [tail(os.path.join(tmp, n), 200)] if t)

    def collect(self, procs, spec_path):
        tmp = os.path.dirname(spec_path)
        out = {}
        ctl = procs[2]
        if ctl.wait(timeout=60) != 0:
            return dict(ok=False, error="bench-ctl exec: " + tail(os.path.join(tmp, "ctl.log")))
        log = tail(os.path.join(tmp, "ctl.log"))
        if " ms" in log:
            try:
                out["setup_ms"] = float(log.rsplit(" in ", 1)[1].split()[0])
            except (IndexError, ValueError):
                pass
        try:
            st = json.loads(cli(self.bins, os.path.join(tmp, "ctl.sock"), "stats", "--json"))
        except (OSError, ValueError):
            return out
        pool = st.get("buffer_pool", {})
        pool_bytes = pool.get("buffer_size", 0) * pool.get("buffers_total", 0)
        out.update(pool_bytes=pool_bytes, daemon_streams=st.get("streams"), daemon_processes=st.get("processes"))
        if st.get("bytes_relayed"):
            out["spliced"] = st.get("bytes_spliced", 0) / st["bytes_relayed"]
        if "loop" in st:
            out["loop"] = st["loop"]
        rss = pool_rss_kb(procs[0].pid, pool_bytes)
        if rss is not None:
            out["pool_rss_kb"] = rss
        return out


VARIANTS = {
    v.name: v for v in [
        Direct("direct", "direct (no relay)"),
        VsockmuxUnderTest("vsockmux", "vsockmux"),
        RelayAlone("relay", "relay/ alone"),
        EpollRelay("epoll", "epoll relay 64K", "--copy"),
        EpollRelay("epoll-shared", "epoll shared buf", "--shared"),
        EpollRelay("splice", "splice relay", "--splice"),
        Socat("socat", "socat", []),
        Socat("socat64k", "socat -b 65536", ["-b", "65536"]),
    ]
}
ALL = list(VARIANTS)


def spawn(argv):
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, close_fds=True)


def stop(procs):
    """SIGKILL: nothing is measured after this, and a thousand socats must not cost seconds.
    Under BENCH_WRAP, SIGTERM first so a profiler can write its output."""
    sig = signal.SIGTERM if os.environ.get("BENCH_WRAP") else signal.SIGKILL
    for p in procs:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---- scenarios ------------------------------------------------------------------------------

MIB = 1 << 20


# relay/'s RELAY_FD_HEADROOM, its splice pool's 256 pipes (two fds each, kept out of the stream
# capacity), and the daemon's own fds with room to spare.
SCALE_FD_ROOM = 64 + 2 * 256 + 100


def scale_nofile(processes):
    """What B15's relays need: two fds per process (the guest's connection and the endpoint)."""
    return 2 * processes + SCALE_FD_ROOM


def scale_processes(want):
    """B15's size: want if the hard open-file limit is (or may be raised to) enough, else the
    most processes a daemon can hold a stdout stream for under it, in hundreds. Raising the hard
    limit needs CAP_SYS_RESOURCE, which root in a container may lack."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= scale_nofile(want):
        return want
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, scale_nofile(want)))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        return want
    except (OSError, ValueError):
        return min(want, (hard - SCALE_FD_ROOM) // 2 // 100 * 100)


def scenarios(quick, socat_many=False, scale=1):
    """Sizes fit the 20,000 open-file limit and a 10-minute full run on 2 cores.

    --quick is a smoke run (about a minute): fewer streams, less data, 3 repetitions.
    Throughput runs carry an untimed warm-up first, so first-touch page faults of a fresh
    relay's buffers are not billed to the first gigabyte. A 10x slower variant (socat with its
    8 KiB buffer) carries a quarter of the bytes: same figure, shorter wait.
    """
    q = quick
    many = 200 if q else 1000      # "1,000 streams"
    idle = 500 if q else 4000       # B7
    # One socat per stream is exec'd once per scenario (see Socat): at 1,000 streams only B2, and
    # only with --socat-1000 (exec'ing them took up to 5 minutes on the loaded machine).
    group = ["direct", "vsockmux", "relay", "epoll", "epoll-shared", "splice"]
    big = (64 if q else 512) * MIB * scale
    big_warm = (16 if q else 64) * MIB
    slow = {"socat": 0.25}

    def bulk(streams, per_stream, warm, kind="unix"):
        return dict(mode="throughput", streams=streams, kind=kind, metric="MB/s", extra="CPU-s/GB", scale=slow,
                    args=["--bytes", str(per_stream), "--warmup", str(warm), "--write-size", "65536"])

    def lines(streams, per_stream, kind="unix"):
        return dict(mode="throughput", streams=streams, kind=kind, metric="msg/s", extra="us/msg",
                    args=["--bytes", str(per_stream * 100), "--warmup", str(max(1, per_stream // 10) * 100),
                          "--write-size", "100", "--burst", "64"])

    # 2 GiB in all across 1,000 streams: about a second, so the figure is the steady state, not the
    # first quarter-second's ramp as 1,000 streams start (vsockmux: 0.46 CPU-s/GB at 512 KiB each, 0.36 at 4 MiB).
    per_stream_bulk = (64 if q else 2048) * 1024 * scale
    per_stream_lines = (50 if q else 300) * scale
    one_lines = (30000 if q else 200000) * scale
    sr_n = 200 if q else 1000       # B10/B11: "1,000 processes"
    scale_n = 2000 if q else scale_processes(10000)  # B15: all on one daemon, `many` of them streaming
    return [
        dict(id="B1", title="one stream, 64 KiB writes", variants=ALL, **bulk(1, big, big_warm)),
        dict(id="B2", title="%d streams, 64 KiB writes" % many, variants=group + (["socat"] if socat_many else []),
             **bulk(many, per_stream_bulk, 65536)),
        dict(id="B3", title="%d streams, 100-byte lines" % many, variants=group, **lines(many, per_stream_lines)),
        dict(id="B4", title="one stream, 100-byte lines", variants=ALL, **lines(1, one_lines)),
        dict(id="B5", title="one-stream echo, 100 B", mode="echo", streams=1, kind="unix",
             args=["--write-size", "100", "--roundtrips", str(2000 if q else 10000)],
             variants=ALL, metric="p50 us", extra="p99 us"),
        dict(id="B6", title="%d-stream closed-loop echo" % many, mode="echo", streams=many, kind="unix",
             args=["--write-size", "100", "--roundtrips", str(20 if q else 100)],
             # Every process on one CPU: unpinned, where the three busy processes land on 2 CPUs
             # (and other work's share of each) moved the ratio 0.5-2.5 x per repetition.
             pin=os.environ.get("BENCH_B6_PIN", "one"),
             variants=group, metric="RT/s", extra="us/RT"),
        dict(id="B7", title="%d idle streams after a 64 KiB burst" % idle, mode="idle",
             streams=idle, kind="unix", args=["--bytes", "65536"],
             variants=group, metric="KiB/stream", extra="tasks"),
        dict(id="B8a", title="100 streams, all consumed (B8 baseline)", mode="stall", streams=100, kind="unix",
             args=["--seconds", "0.4" if q else "1", "--warmup", "262144"], stall=False, group="B8",
             variants=group + ["socat64k"], metric="MB/s", extra="held KiB"),
        dict(id="B8", title="100 streams, one stalled consumer", mode="stall", streams=100, kind="unix",
             args=["--seconds", "0.4" if q else "1", "--warmup", "262144"], stall=True, group="B8",
             variants=group + ["socat64k"], metric="MB/s", extra="held KiB"),
        dict(id="B9.1", title="B1 with a fifo endpoint", variants=ALL, **bulk(1, big, big_warm, "fifo")),
        dict(id="B9.2", title="B2 with fifo endpoints", variants=group,
             **bulk(many, per_stream_bulk, 65536, "fifo")),
        dict(id="B9.3", title="B3 with fifo endpoints", variants=group,
             **lines(many, per_stream_lines, "fifo")),
        # B15: `many` streams carry twice B2's bytes (a 1 s run scattered 0.7-1.7 x under load) beside scale_n - many idle processes (each with its
        # stdout connected, after a 64 KiB burst as in B7), and the same streams alone (B15a)
        # interleaved with it. epoll-shared holds the same sockets and nothing per idle stream: its
        # kernel growth is "the sockets themselves". At most 3 repetitions: each sets up 10,000
        # processes anew (about a minute here), and the full run must stay under 12 minutes.
        dict(id="B15a", title="B15's %d streams alone (no idle processes)" % many, group="B15", reps_max=3,
             variants=["vsockmux", "epoll-shared"], **bulk(many, 2 * per_stream_bulk, 65536)),
        dict(id="B15", title="%d processes on one daemon, %d of them streaming" % (scale_n, many), mode="scale",
             streams=scale_n, active=many, kind="unix", group="B15", nofile=scale_nofile(scale_n), reps_max=3,
             timeout=LOAD_TIMEOUT_S + scale_n // 50, variants=["vsockmux", "epoll-shared"], metric="MB/s",
             extra="KiB/process", args=["--active", str(many), "--bytes", str(2 * per_stream_bulk), "--warmup",
                                        "65536", "--write-size", "65536"]),
        # One set of processes migrates A -> B -> A ... once per repetition (see measure_saverestore).
        dict(id="B10", title="save + restore, %d processes (daemon A -> B -> A ...)" % sr_n, mode="saverestore",
             processes=sr_n, variants=["vsockmux"], metric="save ms", extra="restore ms"),
        dict(id="B11", title="stdio blackout across save/restore (B10's runs)", mode="blackout", same_run="B10",
             variants=["vsockmux"], metric="blackout ms", extra="state KiB"),
    ]


PENDING_SCENARIOS = []


# ---- B10/B11: save and restore with the guest simulator ------------------------------------

SR_VM = "srvm"
SR_PROBE_US = 1000         # the probe process writes a line every millisecond
SR_OTHERS_US = 200000      # the others every 200 ms: 1,000 of them are 5,000 lines/s in all


def sr_check_lines(data):
    """Whether data is "0\n1\n...k\n": every line exactly once, in order. Returns (ok, lines)."""
    lines = data.split(b"\n")
    if lines[-1] != b"":
        return False, len(lines) - 1
    lines.pop()
    for i, x in enumerate(lines):
        if x != str(i).encode():
            return False, i
    return True, len(lines)


def sr_ps(bins, sock):
    out = json.loads(cli(bins, sock, "ps", SR_VM, "--json"))
    return out.get("processes", out) if isinstance(out, dict) else out


def measure_saverestore(bins, sc, reps):
    """Every repetition of B10/B11 (see the README), on one set of processes: daemon A runs
    `processes` bench-tick writers through the real guest simulator; each repetition saves the
    VM on the daemon that has it and restores it on the other one (A -> B -> A ...) with new
    stdout endpoints, then removes it from the source. bench-ctl times the Save and Restore
    calls and the blackout (Save sent -> first byte of the probe process relayed by the
    destination). At the end every writer is told to stop, and each process's output (its
    endpoint files in order) must be its line numbers exactly once, in order, and every exit code
    seen must be 0; otherwise every repetition fails."""
    n = sc["processes"]
    tmp = tempfile.mkdtemp(prefix="vsockmux-bench-sr-", dir=TMP_BASE)
    procs, ctls, results = [], [], []

    def fail(msg):
        return [dict(ok=False, error=msg)] * reps

    def bridge_connected(sock):
        return lambda: any(v.get("name") == SR_VM and v.get("bridge", "").lower() == "connected"
                           for v in json.loads(cli(bins, sock, "vm", "ls", "--json")))

    def first_lines(k):
        return lambda: all(os.path.exists("%s/%d.%d" % (out, i, k)) and os.path.getsize("%s/%d.%d" % (out, i, k)) > 0
                           for i in range(n))
    try:
        socks = [os.path.join(tmp, "a.sock"), os.path.join(tmp, "b.sock")]
        uds, stop_file, out = os.path.join(tmp, "vm.sock"), os.path.join(tmp, "stop"), os.path.join(tmp, "out")
        os.mkdir(out)
        procs.append(start_daemon(bins, tmp, socks[0], "-a"))
        procs.append(start_daemon(bins, tmp, socks[1], "-b"))
        cli(bins, socks[0], "vm", "add", SR_VM, "--hvsock", uds)
        procs.append(subprocess.Popen([bins["vsockmux-sim"], "--hvsock", uds, "--log-level", os.environ.get("BENCH_SIM_LOG", "error")],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=open(os.path.join(tmp, "sim.log"), "w"), close_fds=True))
        jobs = os.path.join(tmp, "jobs")
        with open(jobs, "w") as f:
            for i in range(n):
                f.write("- %s/%d.0 - %s %d %s\n" % (out, i, bins["bench-tick"], SR_PROBE_US if i == 0 else SR_OTHERS_US,
                                                    stop_file))
        t = time.monotonic()
        r = subprocess.run([bins["bench-ctl"], "exec", "--socket", socks[0], "--vm", SR_VM, "--jobs", jobs,
                            "--parallel", "32"], capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            return fail("bench-ctl exec: " + r.stderr.strip()[-300:])
        pids = [int(x) for x in r.stdout.split()]
        # Every writer has written its first line through A: all streams are up.
        wait_for(first_lines(0), 180, "every process's first line on daemon A")
        setup_s = time.monotonic() - t
        for k in range(reps):
            src, dst = socks[k % 2], socks[(k + 1) % 2]
            msg = "B10/B11 save/restore rep %d/%d (%d processes, set up in %.0f s)" % (k + 1, reps, n, setup_s)
            sys.stderr.write(("\r\033[K" + msg) if sys.stderr.isatty() else msg + "\n")
            time.sleep(0.3)  # steady writing, not a start-up burst
            io = os.path.join(tmp, "io.%d" % (k + 1))
            with open(io, "w") as f:
                for i, pid in enumerate(pids):
                    f.write("%d %s/%d.%d\n" % (pid, out, i, k + 1))
            ctl = subprocess.Popen([bins["bench-ctl"], "saverestore", "--from", src, "--to", dst, "--vm", SR_VM,
                                    "--io", io, "--probe-pid", str(pids[0]),
                                    "--probe-sock", os.path.join(tmp, "probe.%d.sock" % (k + 1)),
                                    "--probe-out", "%s/0.%d" % (out, k + 1)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=open(os.path.join(tmp, "ctl.%d.log" % (k + 1)), "w"), text=True)
            ctls.append(ctl)
            line = ctl.stdout.readline()
            if not line.startswith("{"):
                ctl.wait(timeout=60)
                return fail("bench-ctl saverestore: " + tail(os.path.join(tmp, "ctl.%d.log" % (k + 1))))
            res = json.loads(line)
            res.update(ok=True, setup_s=setup_s)
            results.append(res)
            cli(bins, src, "vm", "rm", SR_VM)  # the source lets go of the VM it handed over
            wait_for(first_lines(k + 1), 180, "every process's output on the destination")
            # A restored VM takes no new Save until its guest's bridge is back (the next repetition).
            wait_for(bridge_connected(dst), 180, "the guest's bridge on the destination")
        open(stop_file, "w").close()
        for k, ctl in enumerate(ctls):
            try:
                ctl.wait(timeout=120)
            except subprocess.TimeoutExpired:
                return fail("the probe's output did not end after the stop")
            if ctl.returncode != 0:
                return fail("bench-ctl saverestore: " + tail(os.path.join(tmp, "ctl.%d.log" % (k + 1))))
        last = socks[reps % 2]

        def all_exited():
            return all(p.get("exit") for p in sr_ps(bins, last))
        wait_for(all_exited, 120, "every process's exit on the last daemon")
        bad_exit = [p for p in sr_ps(bins, last) if p["exit"].get("code") != 0]
        if bad_exit:
            return fail("%d processes did not exit 0 (e.g. pid %d: %s)" % (len(bad_exit), bad_exit[0]["pid"],
                                                                           bad_exit[0]["exit"]))
        per_daemon = [0] * (reps + 1)
        for i in range(n):
            data = b""
            for k in range(reps + 1):
                try:
                    with open("%s/%d.%d" % (out, i, k), "rb") as f:
                        part = f.read()
                except FileNotFoundError:
                    part = b""
                per_daemon[k] += part.count(b"\n")
                data += part
            ok, line_no = sr_check_lines(data)
            if not ok:
                return fail("process %d (pid %d): output lost, duplicated or reordered at line %d across "
                            "save/restore" % (i, pids[i], line_no))
        for k, res in enumerate(results):
            res["lines_after"] = per_daemon[k + 1]
        return results
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return fail("%s [%s]" % (e, "; ".join(
            "%s: %s" % (x, tail(os.path.join(tmp, x), 200)) for x in ("sim.log", "vsockmuxd-a.log", "vsockmuxd-b.log")
            if tail(os.path.join(tmp, x), 200))))
    finally:
        if len(procs) > 2:
            procs[2].send_signal(signal.SIGTERM)  # the simulator ends its processes
            try:
                procs[2].wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        stop(procs + ctls)
        if os.environ.get("BENCH_KEEP"):
            sys.stderr.write("kept %s\n" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def scaled(sc, vn):
    """The scenario's bench-load arguments, byte counts scaled for a slow variant."""
    f = sc.get("scale", {}).get(vn)
    args = list(sc["args"])
    if f:
        for i, a in enumerate(args[:-1]):
            if a in ("--bytes", "--warmup"):
                args[i + 1] = str(int(int(args[i + 1]) * f))
    return args


def write_spec(tmp, sc):
    """Echo runs pairs (stdin to_guest, stdout from_guest) per process."""
    streams = []
    n = sc["streams"] * (2 if sc["mode"] == "echo" else 1)
    for i in range(n):
        port = PORT_BASE + i
        d = "from_guest"
        if sc["mode"] == "echo" and i % 2 == 0:
            d = "to_guest"
        ext = "fifo" if sc["kind"] == "fifo" else "sock"
        streams.append(dict(dir=d, port=port, guest="%s/vm.sock_%d" % (tmp, port), kind=sc["kind"],
                            endpoint="%s/ep%d.%s" % (tmp, i, ext)))
    path = os.path.join(tmp, "spec")
    with open(path, "w") as f:
        for s in streams:
            f.write("%s %d %s %s %s\n" % (s["dir"], s["port"], s["guest"], s["kind"], s["endpoint"]))
    return path, streams


class Held:
    """A persistent variant's processes and paths for one scenario."""

    def __init__(self, bins, sc, variant):
        self.tmp = tempfile.mkdtemp(prefix="vsockmux-bench-", dir=TMP_BASE)
        self.spec, self.streams = write_spec(self.tmp, sc)
        with pinned(pin_sets(sc.get("pin"))[1]):
            self.procs = variant.start(bins, self.spec, self.streams)

    def close(self):
        stop(self.procs)
        shutil.rmtree(self.tmp, ignore_errors=True)


def measure(bins, sc, variant, held=None):
    """One repetition: bench-load creates endpoints, we start the relay, it measures."""
    tmp = held.tmp if held else tempfile.mkdtemp(prefix="vsockmux-bench-", dir=TMP_BASE)
    procs = held.procs if held else []
    pin = pin_sets(sc.get("pin"))
    try:
        spec, streams = (held.spec, held.streams) if held else write_spec(tmp, sc)
        argv = [bins["bench-load"], "--spec", spec, "--mode", sc["mode"]] + scaled(sc, variant.name)
        if variant.direct:
            argv.append("--direct")
        with pinned(pin[0]):
            load = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        line = load.stdout.readline()
        if line.strip() != "ready":
            load.kill()
            return dict(ok=False, error="bench-load did not start: " + load.stderr.read().strip()[-300:])
        try:
            if not held:
                with pinned(pin[1]):
                    procs = variant.start(bins, spec, streams)
        except OSError as e:
            load.kill()
            load.wait()
            return dict(ok=False, error="cannot start %s: %s (fd/process limits?)" % (variant.name, e))
        load.stdin.write(" ".join(str(p.pid) for p in variant.measured(procs)) + "\n")
        load.stdin.flush()
        try:
            out, err = load.communicate(timeout=sc.get("timeout", LOAD_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            load.kill()
            return dict(ok=False, error="bench-load timed out")
        lines = [x for x in out.splitlines() if x.startswith("{")]
        if not lines:
            return dict(ok=False, error="bench-load exit %d: %s" % (load.returncode, err.strip()[-300:]))
        res = json.loads(lines[-1])
        if load.returncode != 0 and res.get("ok"):
            res.update(ok=False, error="bench-load exit %d" % load.returncode)
        if res.get("ok") and procs:
            res.update(variant.collect(procs, spec))
        if not res.get("ok") and procs:
            why = variant.diagnose(procs, spec)
            if why:
                res["error"] = "%s [%s]" % (res.get("error"), why)
        return res
    finally:
        if not held:
            stop(procs)
            shutil.rmtree(tmp, ignore_errors=True)


def pin_sets(how):
    """Where a scenario's processes run: (bench-load with its guest child, the relay's processes),
    None for unpinned. "one": all on the first allowed CPU; "split": load there, relay on the next."""
    cpus = sorted(os.sched_getaffinity(0))
    if how == "one":
        return {cpus[0]}, {cpus[0]}
    if how == "split" and len(cpus) > 1:
        return {cpus[0]}, {cpus[1]}
    return None, None


# Set on the driver around each start, so the children and their later threads inherit it.
@contextlib.contextmanager
def pinned(cpus):
    if not cpus:
        yield
        return
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def figures(sc, r):
    """(primary, extra) from one bench-load result, in the scenario's units."""
    mode, n = sc["mode"], sc.get("streams")
    if mode == "throughput":
        cpu = r["relay_cpu_s"]
        if sc["metric"] == "MB/s":
            return r["bytes"] / r["seconds"] / 1e6, cpu / (r["bytes"] / 1e9) if cpu >= 0 else None
        return r["messages"] / r["seconds"], cpu / r["messages"] * 1e6 if cpu >= 0 else None
    if mode == "echo":
        if n == 1:
            return r["p50_us"], r["p99_us"]
        cpu = r["relay_cpu_s"]
        return r["messages"] / r["seconds"], cpu / r["messages"] * 1e6 if cpu >= 0 else None
    if mode == "idle":
        # Relay RSS growth plus kernel slab/stack growth, per stream. The direct run's kernel
        # growth is the sockets themselves; the table's target check subtracts twice that
        # (a relay holds two connections per stream where direct holds one).
        pool_rss = r.get("pool_rss_kb", 0)
        rss = (r["rss_kb_end"] - r["rss_kb_before"] - pool_rss) / n
        kern = (r["kernel_kb_end"] - r["kernel_kb_before"]) / n
        return rss + kern, dict(rss=rss, kernel=kern, tasks=r["tasks"], iou_wrk=r["iou_wrk"],
                                pool_mib=r["pool_bytes"] / MIB if "pool_bytes" in r else None,
                                pool_rss_mib=pool_rss / 1024)
    if mode == "scale":
        # Per process, from the idle sample: every stream up, its burst carried, nothing flowing.
        # The pool's resident part is not subtracted: collect() reads it after the streaming, which
        # grew it (32 MiB resident then against a 2 MiB pool at idle in B7).
        rss = (r["rss_kb_idle"] - r["rss_kb_before"]) / n
        kern = (r["kernel_kb_idle"] - r["kernel_kb_before"]) / n
        cpu = r["relay_cpu_s"]
        return r["bytes"] / r["seconds"] / 1e6, dict(
            rss=rss, kernel=kern, fds=r["fds_idle"], fds_per=r["fds_idle"] / n,
            setup_s=r["setup_ms"] / 1000 if "setup_ms" in r else None,
            cpu_gb=cpu / (r["bytes"] / 1e9) if cpu >= 0 else None, processes=r.get("daemon_processes"))
    if mode == "saverestore":
        return r["save_ms"], r["restore_ms"]
    if mode == "blackout":
        return r["blackout_ms"], r["state_bytes"] / 1024
    if mode == "stall":
        others = r["others_bytes"] / r["seconds"] / 1e6
        if sc.get("stall"):
            return others, r["stalled_absorbed"] / 1024
        return others, None
    raise ValueError(mode)


def summarize(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return dict(median=statistics.median(vals), min=min(vals), max=max(vals), n=len(vals))


# ---- targets --------------------------------------------------------------------------------

def med(summary, sid, var, key="primary"):
    s = summary.get(sid, {}).get(var)
    if not s or not s.get(key):
        return None
    return s[key]["median"]


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def targets(summary):
    """(scenario, what, value, op, goal) per target of issues 7 and 18; value None = pending/not measured."""
    t = []
    m = lambda sid, var, key="primary": med(summary, sid, var, key)  # noqa: E731
    for sid, base in (("B1", "B1"), ("B9.1", "B9.1")):
        t.append((sid, "vsockmux / direct throughput", ratio(m(sid, "vsockmux"), m(sid, "direct")), ">=", 0.40))
        t.append((sid, "vsockmux relay CPU-s/GB", m(sid, "vsockmux", "extra"), "<=", 0.30))
        t.append((sid, "vsockmux / socat default", ratio(m(sid, "vsockmux"), m(sid, "socat")), ">=", 5.0))
        t.append((sid, "vsockmux / socat -b 65536", ratio(m(sid, "vsockmux"), m(sid, "socat64k")), ">=", 1.3))
    for sid in ("B2", "B9.2"):
        t.append((sid, "vsockmux / direct aggregate", ratio(m(sid, "vsockmux"), m(sid, "direct")), ">=", 0.55))
        t.append((sid, "vsockmux relay CPU-s/GB", m(sid, "vsockmux", "extra"), "<=", 0.30))
    for sid in ("B3", "B9.3"):
        t.append((sid, "vsockmux / direct msg/s", ratio(m(sid, "vsockmux"), m(sid, "direct")), ">=", 0.90))
        t.append((sid, "vsockmux relay CPU us/msg", m(sid, "vsockmux", "extra"), "<=", 1.6))
        t.append((sid, "epoll / vsockmux CPU per msg", ratio(m(sid, "epoll", "extra"), m(sid, "vsockmux", "extra")),
                  ">=", 1.5))
    t.append(("B4", "vsockmux / direct msg/s", ratio(m("B4", "vsockmux"), m("B4", "direct")), ">=", 0.90))
    d50 = m("B5", "direct")
    t.append(("B5", "vsockmux p50 - direct p50 (us)",
              None if m("B5", "vsockmux") is None or d50 is None else m("B5", "vsockmux") - d50, "<=", 35.0))
    t.append(("B5", "vsockmux p99 / epoll p99", ratio(m("B5", "vsockmux", "extra"), m("B5", "epoll", "extra")),
              "<=", 1.0))
    t.append(("B6", "vsockmux / epoll round trips/s", ratio(m("B6", "vsockmux"), m("B6", "epoll")), ">=", 1.7))
    b7 = summary.get("B7", {})
    # The epoll relay holds exactly the same two sockets per stream and nothing else in the
    # kernel but epoll items: its kernel growth is "the sockets themselves".
    sock = m("B7", "epoll", "kernel")
    v = m("B7", "vsockmux", "rss")
    k = m("B7", "vsockmux", "kernel")
    t.append(("B7", "vsockmux KiB/stream over the sockets", None if None in (v, k, sock) else v + k - sock,
              "<=", 4.0))
    t.append(("B7", "vsockmux iou-wrk threads", m("B7", "vsockmux", "iou_wrk"), "<=", 0))
    pool = b7.get("vsockmux", {}).get("pool_mib")
    t.append(("B7", "vsockmux buffer pool MiB", pool["median"] if pool else None, "<=", 64))
    t.append(("B8", "vsockmux others' MB/s stalled / not", ratio(m("B8", "vsockmux"), m("B8a", "vsockmux")),
              ">=", 0.90))
    t.append(("B8", "vsockmux KiB held for the stalled stream", m("B8", "vsockmux", "extra"), "<=", 1024))
    # B10/B11: reported, no target.
    sr = m("B10", "vsockmux"), m("B10", "vsockmux", "extra")
    t.append(("B10", "vsockmux save + restore ms", None if None in sr else sr[0] + sr[1], "report", None))
    t.append(("B11", "vsockmux stdio blackout ms", m("B11", "vsockmux"), "report", None))
    return t + targets_round2(summary)


# Rows whose figure is better higher: "vsockmux >= 0.95 x relay/ alone" is checked on these.
HIGHER_IS_BETTER = ("B1", "B2", "B3", "B4", "B6", "B8", "B9.1", "B9.2", "B9.3")


def best_peer(summary, sid):
    """The highest median among the tools a user would pick instead of vsockmux."""
    vals = [med(summary, sid, v) for v in ("epoll", "epoll-shared", "splice", "socat", "socat64k")]
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


def targets_round2(summary):
    """Issue 18's targets, as ratios in one run."""
    t = []
    m = lambda sid, var, key="primary": med(summary, sid, var, key)  # noqa: E731
    for sid in ("B1", "B9.1", "B2", "B9.2"):
        t.append((sid, "vsockmux / splice relay throughput", ratio(m(sid, "vsockmux"), m(sid, "splice")), ">=", 1.0))
    for sid in ("B2", "B9.2"):
        t.append((sid, "vsockmux / splice relay CPU-s/GB", ratio(m(sid, "vsockmux", "extra"), m(sid, "splice", "extra")),
                  "<=", 1.1))
    for sid in ("B3", "B9.3"):
        t.append((sid, "vsockmux / best peer msg/s", ratio(m(sid, "vsockmux"), best_peer(summary, sid)), ">=", 1.0))
        t.append((sid, "vsockmux / epoll us/msg", ratio(m(sid, "vsockmux", "extra"), m(sid, "epoll", "extra")),
                  "<=", 0.8))
    t.append(("B6", "vsockmux / epoll round trips/s (round 2)", ratio(m("B6", "vsockmux"), m("B6", "epoll")), ">=",
              1.5))
    for sid in HIGHER_IS_BETTER:
        t.append((sid, "vsockmux / relay/ alone", ratio(m(sid, "vsockmux"), m(sid, "relay")), ">=", 0.95))
    # Over the sockets against each epoll variant's kernel growth: both hold the same two sockets.
    v, k = m("B7", "vsockmux", "rss"), m("B7", "vsockmux", "kernel")
    for peer in ("epoll", "epoll-shared"):
        sock = m("B7", peer, "kernel")
        t.append(("B7", "vsockmux KiB/stream over %s's sockets" % peer,
                  None if None in (v, k, sock) else v + k - sock, "<=", 4.0))
    sr = m("B10", "vsockmux"), m("B10", "vsockmux", "extra")
    total = None if None in sr else sr[0] + sr[1]
    t.append(("B10", "vsockmux save + restore ms (round 2)", total, "<=", 100.0))
    bo = m("B11", "vsockmux")
    t.append(("B11", "vsockmux blackout - (save + restore) ms", None if None in (bo, total) else bo - total, "<=",
              30.0))
    # B15: the processes one daemon held, what each costs at that scale, and what the idle ones
    # cost the streaming ones (MB/s against the same streams alone, B15a, in the same run).
    t.append(("B15", "vsockmux processes on one daemon", m("B15", "vsockmux", "processes"), ">=", 10000))
    v, k, sock = m("B15", "vsockmux", "rss"), m("B15", "vsockmux", "kernel"), m("B15", "epoll-shared", "kernel")
    t.append(("B15", "vsockmux KiB/process in all", None if None in (v, k) else v + k, "report", None))
    t.append(("B15", "vsockmux KiB/process over the sockets", None if None in (v, k, sock) else v + k - sock,
              "report", None))
    t.append(("B15", "vsockmux MB/s with the idle / without", ratio(m("B15", "vsockmux"), m("B15a", "vsockmux")),
              "report", None))
    # CPU per GB holds still where the rate does not: under load a 2 s run's MB/s moves 0.5-1.7 x.
    t.append(("B15", "vsockmux CPU-s/GB with the idle / without",
              ratio(m("B15", "vsockmux", "cpu_gb"), m("B15a", "vsockmux", "extra")), "report", None))
    t.append(("B15", "vsockmux daemon fds", m("B15", "vsockmux", "fds"), "report", None))
    t.append(("B15", "vsockmux setup s", m("B15", "vsockmux", "setup_s"), "report", None))
    return t


def check(value, op, goal):
    if value is None:
        return "PENDING"
    if op == "report":
        return "REPORTED"
    ok = value >= goal if op == ">=" else value <= goal
    return "PASS" if ok else "MISS"


# ---- output ---------------------------------------------------------------------------------

def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1e6:
        return "%.2fM" % (v / 1e6)
    if a >= 1e4:
        return "%.0fk" % (v / 1e3)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    return "%.2f" % v


def cell(s):
    if not s:
        return "-"
    return "%s [%s-%s]" % (fmt(s["median"]), fmt(s["min"]), fmt(s["max"]))


def med_of(s, key):
    return s[key]["median"] if s.get(key) else None


def render(scs, summary, tgts, skipped):
    out = []
    for sc in scs:
        out.append("%s  %s  (%s; %s)" % (sc["id"], sc["title"], sc["metric"], sc["extra"]))
        d = med(summary, sc["id"], "direct")
        for vn in sc["variants"]:
            s = summary.get(sc["id"], {}).get(vn)
            label = VARIANTS[vn].label
            if vn in skipped:
                out.append("    %-18s PENDING: %s" % (label, skipped[vn]))
                continue
            if not s or not s.get("primary"):
                err = (s or {}).get("error", "no result")
                out.append("    %-18s FAILED: %s" % (label, err))
                continue
            rel = ratio(s["primary"]["median"], d)
            extra = s.get("extra")
            if sc["mode"] == "idle":
                extra_s = "rss %s + kernel %s KiB/stream, tasks %s, iou-wrk %s" % (
                    fmt(s["rss"]["median"]), fmt(s["kernel"]["median"]), fmt(s["tasks"]["median"]),
                    fmt(s["iou_wrk"]["median"]))
                if s.get("pool_mib"):
                    extra_s += ", pool %s MiB (%s resident, not in rss)" % (
                        fmt(s["pool_mib"]["median"]), fmt(s["pool_rss_mib"]["median"]))
            elif sc["mode"] == "scale":
                fds = med_of(s, "fds")
                extra_s = "rss %s + kernel %s KiB/process, %s fds (%s per process), setup %s s, CPU-s/GB %s" % (
                    fmt(med_of(s, "rss")), fmt(med_of(s, "kernel")), "-" if fds is None else "%d" % fds,
                    fmt(med_of(s, "fds_per")), fmt(med_of(s, "setup_s")), fmt(med_of(s, "cpu_gb")))
                if s.get("spliced") and med_of(s, "spliced") is not None:
                    extra_s += ", spliced %.0f%%" % (100 * med_of(s, "spliced"))
            else:
                extra_s = "%s %s" % (sc["extra"], cell(extra))
                if s.get("wake"):
                    extra_s += "  wake/msg %s, CQEs/turn %s" % (fmt(med_of(s, "wake")), fmt(med_of(s, "cqes_turn")))
                if s.get("load_us"):
                    extra_s += "  load us/RT %s, busy %s" % (fmt(med_of(s, "load_us")), cell(s.get("busy")))
                if s.get("spliced") and med_of(s, "spliced") is not None:
                    extra_s += ", spliced %.0f%%" % (100 * med_of(s, "spliced"))
            out.append("    %-18s %-26s %-7s %s%s" % (
                label, cell(s["primary"]), "x%.2f" % rel if rel is not None and sc["mode"] not in ("idle", "scale") else "",
                extra_s, "  (%d failed reps)" % s["failed"] if s.get("failed") else ""))
    out.append("")
    out.append("Targets (issue 7, then issue 18)")
    ran = {sc["id"] for sc in scs}
    for sid, what, value, op, goal in tgts:
        if sid not in ran:
            continue  # --only left it out
        if op == "report":
            out.append("    %-5s %-40s %10s  %-9s %s" % (sid, what, fmt(value), "", check(value, op, goal)))
            continue
        out.append("    %-5s %-40s %10s  %s %-6s %s" % (sid, what, fmt(value), op, fmt(goal), check(value, op, goal)))
    for sid, title, why in PENDING_SCENARIOS:
        out.append("    %-5s %-40s %10s  PENDING (%s)" % (sid, title, "-", why))
    return "\n".join(out)


def chart(scs, summary, path):
    """Each variant's median as a multiple of direct, per scenario; higher is better throughout."""
    if not shutil.which("gnuplot"):
        return "gnuplot not installed"
    rows = [sc for sc in scs if sc["mode"] != "idle" and med(summary, sc["id"], "direct")]
    # gnuplot refuses a histogram column without a single point: plot only variants that ran.
    names = [v for v in ALL if v != "direct" and any(med(summary, sc["id"], v) for sc in rows)]
    if not rows or not names:
        return "nothing to draw"
    dat = path + ".dat"
    with open(dat, "w") as f:
        f.write("scenario " + " ".join(names) + "\n")
        for sc in rows:
            d = med(summary, sc["id"], "direct")
            vals = []
            for vn in names:
                # Latency: direct / variant, so that every bar reads "higher is better".
                r = ratio(d, med(summary, sc["id"], vn)) if sc["mode"] == "echo" and sc["streams"] == 1 \
                    else ratio(med(summary, sc["id"], vn), d)
                vals.append("%.4f" % r if r is not None else "NaN")
            f.write('"%s" %s\n' % (sc["id"], " ".join(vals)))
    gp = """set terminal pngcairo size 1200,600 font "sans,10"
set output '%s'
set title "vsockmux bench: median as a multiple of direct, higher is better (B5: direct p50 / p50)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key outside right top
set yrange [0:*]
set grid ytics
set ylabel "x direct"
plot for [i=2:%d] '%s' using i:xtic(1) title columnheader(i)
""" % (path, len(names) + 1, dat)
    r = subprocess.run(["gnuplot"], input=gp, text=True, capture_output=True)
    os.unlink(dat)
    if r.returncode == 0 and os.path.getsize(path) > 0:
        return None
    if os.path.exists(path):
        os.unlink(path)
    return r.stderr.strip()[-200:] or "gnuplot failed"


# ---- build ----------------------------------------------------------------------------------

# Programs by name: bench/ ones, and the project's own the daemon variant and B10/B11 run.
PROGRAMS = {
    "bench-load": "bench", "bench-epoll-relay": "bench", "relay-under-test": "bench", "bench-guest": "bench",
    "bench-ctl": "bench", "bench-tick": "bench", "vsockmuxd": "daemon", "vsockmux": "cli",
    "vsockmux-sim": "sim",
}


def find_programs(bench_dir, root_dir):
    bins = {}
    for name, sub in PROGRAMS.items():
        p = os.path.join(bench_dir if sub == "bench" else os.path.join(root_dir, sub), name)
        if os.access(p, os.X_OK):
            bins[name] = p
    return bins


def build(args):
    """Returns {program: path}; the optional ones only when their modules build."""
    if args.bin_dir:
        bins = find_programs(args.bin_dir, os.path.dirname(os.path.abspath(args.bin_dir)))
    else:
        if not os.path.exists(os.path.join(BUILD_DIR, "build.ninja")):
            subprocess.run(["meson", "setup", "--buildtype=release", BUILD_DIR, ROOT], check=True,
                           stdout=subprocess.DEVNULL)
        targets_ = ["bench/bench-load", "bench/bench-epoll-relay"]
        subprocess.run(["ninja", "-C", BUILD_DIR] + targets_, check=True, stdout=subprocess.DEVNULL)
        # Optional: each builds only once the modules it needs have landed.
        for t in ("bench/relay-under-test", "bench/bench-guest", "bench/bench-ctl", "bench/bench-tick",
                  "daemon/vsockmuxd", "cli/vsockmux", "sim/vsockmux-sim"):
            subprocess.run(["ninja", "-C", BUILD_DIR, t], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bins = find_programs(os.path.join(BUILD_DIR, "bench"), BUILD_DIR)
    for need in ("bench-load", "bench-epoll-relay"):
        if need not in bins:
            sys.exit("run.py: %s missing" % need)
    return bins


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return dict(host=platform.node(), kernel=platform.release(), cpu=cpu, cpus=os.cpu_count(),
                nofile=resource.getrlimit(resource.RLIMIT_NOFILE))


def scenarios_sharing(plan, sc):
    return [sc["id"]] + sorted({x["id"] for x, _, _ in plan if x.get("same_run") == sc["id"]} |
                               set(sc.get("shared_by", [])))


@contextlib.contextmanager
def open_file_limit(need):
    """RLIMIT_NOFILE of at least need for what starts inside (the relays raise their soft limit to
    the hard one): B15's relays hold two fds per process, over a 20,000 hard limit at 10,000. Root
    may raise the hard limit (up to fs.nr_open); it is put back after. Yields None, or why not."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= need:
        yield None
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
    except (OSError, ValueError) as e:
        yield "needs RLIMIT_NOFILE >= %d, the hard limit is %d (%s; run as root or raise ulimit -Hn)" % (
            need, hard, e)
        return
    try:
        yield None
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def run_plan(bins, plan, reps, raw, held, tty):
    """Runs every (scenario, rep, variant) in order; fills raw; returns failure lines."""
    failures = []
    t_start = time.monotonic()
    for k, (sc, rep, vn) in enumerate(plan):
        msg = "[%3d/%d %4.0fs] %s %s rep %d/%d" % (k + 1, len(plan), time.monotonic() - t_start, sc["id"],
                                                  vn, rep + 1, reps)
        sys.stderr.write(("\r\033[K" + msg) if tty else msg + "\n")
        sys.stderr.flush()
        variant = VARIANTS[vn]
        key = (vn, sc["id"])
        if variant.persistent and key not in held:
            try:
                held[key] = Held(bins, sc, variant)
            except OSError as e:
                held[key] = None
                failures.append("%s %s: cannot start: %s (fd/process limits?)" % (sc["id"], vn, e))
        if variant.persistent and held[key] is None:
            continue
        if sc["mode"] == "saverestore":
            # All repetitions on one set of processes; the scenarios reading the same run share them.
            runs = measure_saverestore(bins, sc, reps)
            for other in scenarios_sharing(plan, sc):
                raw.setdefault(other, {})[vn] = runs
            for i, r in enumerate(runs):
                if not r.get("ok"):
                    failures.append("%s %s rep %d: %s" % (sc["id"], vn, i + 1, r.get("error")))
            continue
        with open_file_limit(sc.get("nofile", 0)) as why:
            r = dict(ok=False, error=why) if why else measure(bins, sc, variant, held.get(key))
        raw.setdefault(sc["id"], {}).setdefault(vn, []).append(r)
        if not r.get("ok"):
            failures.append("%s %s rep %d: %s" % (sc["id"], vn, rep + 1, r.get("error")))
        nxt = plan[k + 1][0] if k + 1 < len(plan) else None
        if nxt is None or nxt.get("group", nxt["id"]) != sc.get("group", sc["id"]):
            for h in held.values():
                if h:
                    h.close()
            held.clear()
    return failures


def main():
    ap = argparse.ArgumentParser(description="vsockmux benchmarks (issue 7)")
    ap.add_argument("--quick", action="store_true", help="small sizes, about a minute (smoke)")
    ap.add_argument("--reps", type=int, help="repetitions per variant (default 5, --quick 3)")
    ap.add_argument("--only", help="comma-separated scenario ids, e.g. B1,B5")
    ap.add_argument("--variants", help="comma-separated variants (direct is always kept)")
    ap.add_argument("--bin-dir", help="use prebuilt bench programs from this directory")
    ap.add_argument("--socat-1000", action="store_true", help="also run socat in B2 (1,000 socat processes)")
    ap.add_argument("--scale", type=int, default=1,
                    help="multiply the bytes and lines of the throughput scenarios (for profiling the steady state)")
    ap.add_argument("--out", default=RESULTS, help="results directory")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    if args.reps is None:
        args.reps = 3 if args.quick else 5
    bins = build(args)
    scs = scenarios(args.quick, args.socat_1000, max(1, args.scale))
    if args.only:
        keep = set(args.only.split(","))
        scs = [s for s in scs if s["id"] in keep]
    if args.variants:
        keep = set(args.variants.split(",")) | {"direct"}
        for s in scs:
            s["variants"] = [v for v in s["variants"] if v in keep]
    skipped = {}
    for vn in ALL:
        why = VARIANTS[vn].pending(bins)
        if why:
            skipped[vn] = why

    # Interleaved: A B C A B C ...; scenarios sharing a "group" (B8a/B8) interleave together,
    # so the stalled run and its baseline see the same machine.
    groups = []
    for sc in scs:
        if groups and sc.get("group") and groups[-1][0].get("group") == sc["group"]:
            groups[-1].append(sc)
        else:
            groups.append([sc])
    plan = []
    by_id = {sc["id"]: sc for sc in scs}
    for sc in scs:
        if sc.get("same_run") in by_id:
            by_id[sc["same_run"]].setdefault("shared_by", []).append(sc["id"])
    sr_missing = [b for b in ("vsockmux-sim", "bench-tick") if b not in bins]
    for grp in groups:
        for rep in range(args.reps):
            for vn in ALL:
                for sc in grp:
                    if vn not in sc["variants"] or vn in skipped or sc.get("same_run"):
                        continue
                    if sc["mode"] == "saverestore" and (rep > 0 or sr_missing):
                        continue  # one entry runs every repetition
                    if rep >= sc.get("reps_max", args.reps):
                        continue
                    plan.append((sc, rep, vn))
    if sr_missing:
        skipped_sr = "not built: " + ", ".join(sr_missing)
        for sc in scs:
            if sc["mode"] in ("saverestore", "blackout"):
                PENDING_SCENARIOS.append((sc["id"], sc["title"], skipped_sr))

    raw = {}
    t_start = time.monotonic()
    tty = sys.stderr.isatty()
    held = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(130))
    try:
        failures = run_plan(bins, plan, args.reps, raw, held, tty)
    finally:
        # Also on ^C, SIGTERM or a closed pipe: never leave a thousand socats behind.
        for h in held.values():
            if h:
                h.close()
    if tty:
        sys.stderr.write("\r\033[K")
    elapsed = time.monotonic() - t_start

    summary = {}
    for sc in scs:
        for vn, runs in raw.get(sc["id"], {}).items():
            good = [r for r in runs if r.get("ok")]
            figs = [figures(sc, r) for r in good]
            s = dict(primary=summarize([f[0] for f in figs]), failed=len(runs) - len(good))
            if sc["mode"] == "idle":
                for key in ("rss", "kernel", "tasks", "iou_wrk", "pool_mib", "pool_rss_mib"):
                    s[key] = summarize([f[1][key] for f in figs])
            elif sc["mode"] == "scale":
                for key in ("rss", "kernel", "fds", "fds_per", "setup_s", "cpu_gb", "processes"):
                    s[key] = summarize([f[1][key] for f in figs])
            else:
                s["extra"] = summarize([f[1] for f in figs])
            loops = [r for r in good if r.get("loop") and r.get("messages")]
            if loops:
                # The relay loop's counters span the whole repetition (setup and warm-up too):
                # per measured message they overstate a little, the same for both loops.
                s["wake"] = summarize([r["loop"]["sleeps"] / r["messages"] for r in loops])
                s["cqes_turn"] = summarize([r["loop"]["cqes"] / max(1, r["loop"]["turns"]) for r in loops])
            if sc["mode"] == "echo" and sc["streams"] > 1:
                # The load generator's own CPU per round trip: on B6's one CPU it shares the
                # round trip's cost with the relay, which bounds the ratios between relays.
                timed = [r for r in good if r.get("load_cpu_s", -1) >= 0 and r.get("messages")]
                s["load_us"] = summarize([r["load_cpu_s"] / r["messages"] * 1e6 for r in timed])
                # What share of a CPU the loop's processes got in the window: pinned to one CPU,
                # under 0.9 means other work took that CPU too and the RT/s is not the loop's.
                s["busy"] = summarize([(r["load_cpu_s"] + max(0, r["relay_cpu_s"])) / r["seconds"] for r in timed])
            spl = [r["spliced"] for r in good if "spliced" in r]
            if spl:
                s["spliced"] = summarize(spl)
            if len(good) < len(runs):
                s["error"] = next(r.get("error") for r in runs if not r.get("ok"))
            summary.setdefault(sc["id"], {})[vn] = s
    tgts = targets(summary)

    os.makedirs(args.out, exist_ok=True)
    table = render(scs, summary, tgts, skipped)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    m = machine()
    header = "vsockmux bench %s, %s, %s x%s, kernel %s, %d reps%s, %.0f s" % (
        stamp, m["host"], m["cpu"], m["cpus"], m["kernel"], args.reps, " (quick)" if args.quick else "", elapsed)
    print(header)
    print(table)
    png = os.path.join(args.out, "latest.png")
    err = chart(scs, summary, png)
    print("\nresults: %s%s" % (os.path.join(args.out, "latest.json"),
                               "" if err else ", chart: " + png))
    if err:
        print("chart not drawn: " + err)
    doc = dict(when=stamp, machine=m, quick=args.quick, reps=args.reps, seconds=elapsed,
               skipped=skipped, pending_scenarios=PENDING_SCENARIOS,
               scenarios=[{k: v for k, v in sc.items()} for sc in scs], summary=summary,
               targets=[dict(scenario=a, what=b, value=c, op=d, goal=e, verdict=check(c, d, e))
                        for a, b, c, d, e in tgts],
               raw=raw, table=table)
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump(doc, f, indent=1)
    if failures:
        print("\nFAILED repetitions (integrity or setup):")
        for f_ in failures:
            print("    " + f_)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
