#!/usr/bin/env python3
"""vsockmuxd --fdstore across a restart, with this test playing systemd's service manager
(tests/integration/systemd_mock.py: systemd cannot run here, PID 1 is not systemd): a SIGTERM
leaves every connection in one Unix socket in the fd store (FDSTORE=1, FDNAME=vsockmux-handover),
the next start gets it as LISTEN_FDNAMES=vsockmux-handover, takes over and sends FDSTOREREMOVE=1.

The guest is hcsshim's (vsockmux-sim --fidelity upstream): a reply it makes while no bridge
connection is up panics it and its VM stops. A process that exits while no daemon runs makes one
(the answer to the wait vsockmuxd left in the guest): through the fd store the connection stays up
and the guest lives on; a plain restart (the negative control) kills it.

Usage: test-fdstore.py DAEMON CLI SIM HANDOVER_PEER (tests/integration/handover-peer.c). Every wait is bounded (60 s) and nothing asserts how fast
anything happens."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_env  # noqa: E402
from systemd_mock import Daemon, Manager, cli, listening_socket  # noqa: E402

WAIT_S = daemon_env.WAIT_S
STORE_NAME = "vsockmux-handover"
LINES = 2000  # each half of the writer's output: more than one read, every line checked


class Scene:
    """One unit's worth: the fake service manager, a state dir, the control socket, one VM played
    by the simulator and the files its writer uses."""

    def __init__(self, paths, tmp, upstream=True, activated=False):
        self.daemon_path, self.cli_path, self.sim_path = paths[:3]
        self.tmp = tmp
        self.manager = Manager(tmp)
        self.sock = os.path.join(tmp, "ctl.sock")
        self.state = os.path.join(tmp, "state")
        self.hv = os.path.join(tmp, "demo.hv")
        self.stats = os.path.join(tmp, "sim.stats")
        self.sim_log = os.path.join(tmp, "sim.log")
        self.upstream = upstream
        self.lsock = listening_socket(self.sock) if activated else None
        self.daemons = []
        self.sim = None
        self.starts = 0

    def start(self, *args):
        """A start of the service: with the control socket if the unit is socket-activated, and
        whatever the fd store holds."""
        self.starts += 1
        listen = [(self.lsock, "control")] if self.lsock else []
        self.passed_inodes = [os.fstat(fd).st_ino for fd in self.manager.stored(STORE_NAME)]
        d = Daemon(self.daemon_path, self.tmp, manager=self.manager, listen=listen, state_dir=self.state,
                   log=os.path.join(self.tmp, "daemon-%d.log" % self.starts), args=["--socket", self.sock] + list(args))
        self.daemons.append(d)
        d.expect(lambda f: f.get("READY") == "1", "READY=1")
        return d

    def cli(self, *args, check=True):
        return cli(self.cli_path, self.sock, *args, check=check)

    def logs(self):
        out = ""
        for d in self.daemons:
            out += "---- %s ----\n%s" % (d.log, d.read_log())
        try:
            with open(self.sim_log) as f:
                out += "---- %s ----\n%s" % (self.sim_log, f.read())
        except OSError:
            pass
        return out

    def until(self, pred, what):
        return daemon_env.until(pred, what, self.logs)

    def bridge(self):
        vms = json.loads(self.cli("vm", "ls", "--json").stdout)
        return next((v["bridge"] for v in vms if v["name"] == "demo"), None)

    def add_vm(self):
        self.cli("vm", "add", "demo", "--hvsock", self.hv)
        argv = [self.sim_path, "--hvsock", self.hv, "--stats", self.stats]
        if self.upstream:
            argv.append("--fidelity=upstream")
        with open(self.sim_log, "w") as log:
            self.sim = subprocess.Popen(argv, stdout=log, stderr=log)
        self.until(lambda: self.bridge() == "connected", "the bridge")

    def sim_stats(self):
        try:
            with open(self.stats) as f:
                return {k: int(v) for k, v in (line.split() for line in f if line.strip())}
        except OSError:
            return {}

    def writer(self, code):
        """A detached exec writing 1..LINES to a file endpoint, then, once the go file is there,
        LINES+1..2*LINES, then the exited marker, then exit `code`: (pid, output path)."""
        out = os.path.join(self.tmp, "out")
        go, marker = os.path.join(self.tmp, "go"), os.path.join(self.tmp, "exited")
        script = ("seq 1 %d; while [ -d %s ] && [ ! -e %s ]; do sleep 0.05; done; seq %d %d; touch %s; exit %d"
                  % (LINES, self.tmp, go, LINES + 1, 2 * LINES, marker, code))
        r = self.cli("exec", "demo", "--detach", "--stdout", out, "--", "sh", "-c", script)
        pid = int(r.stdout.split()[0])
        self.until(lambda: file_has(out, "\n%d\n" % LINES), "the writer's first half")
        return pid, out

    def stop(self, d):
        """SIGTERM, as `systemctl restart` stops the service: exits 0."""
        os.kill(d.pid, signal.SIGTERM)
        code = d.wait()
        assert code == 0, "vsockmuxd exited %d on SIGTERM\n%s" % (code, self.logs())
        self.manager.drain()

    def close(self):
        for d in self.daemons:
            d.kill()
        if self.sim and self.sim.poll() is None:
            self.sim.kill()
            self.sim.wait()
        if self.lsock:
            self.lsock.close()
        self.manager.close()


def file_has(path, needle):
    try:
        with open(path) as f:
            return needle in f.read()
    except OSError:
        return False


def assert_seq(path, n, scene):
    with open(path) as f:
        got = f.read()
    want = "".join("%d\n" % i for i in range(1, n + 1))
    if got != want:
        lines = got.split("\n")
        raise AssertionError("%s: %d bytes, %d lines, not 1..%d once each (first lines %r, last %r)\n%s"
                             % (path, len(got), len(lines) - 1, n, lines[:3], lines[-3:], scene.logs()))


def stored_datagrams(scene):
    return [(f, pid, n) for f, pid, n in scene.manager.received if f.get("FDSTORE") == "1"]


def expect_removed(scene, b, n=1):
    """B's FDSTOREREMOVE=1 for the handover (before or after its READY=1), the n-th of the unit,
    from B's pid: the store holds nothing after it, so no later start gets that socket again."""
    def removes():
        return [(f, p) for f, p, _ in scene.manager.received if f.get("FDSTOREREMOVE") == "1"]
    if len(removes()) < n:
        b.expect(lambda f: f.get("FDSTOREREMOVE") == "1", "FDSTOREREMOVE=1")
    rm = removes()
    assert len(rm) == n and rm[-1][0].get("FDNAME") == STORE_NAME and rm[-1][1] == b.pid, rm
    assert scene.manager.stored(STORE_NAME) == [], scene.manager.store
    # Read, B keeps no copy of the stored socket either: nothing holds it open any more.
    scene.until(lambda: not holds_socket(b.pid, scene.passed_inodes), "B closing the stored socket")


def holds_socket(pid, inodes):
    want = set("socket:[%d]" % i for i in inodes)
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) in want:
                return True
        except OSError:
            pass
    return False


def answered(scene):
    """The simulator's counts once it answered the wait (written) or panicked at the answer."""
    st = scene.sim_stats()
    return st if st.get("wait_exited_sent", 0) + st.get("bridge_panics", 0) >= 1 else None


def restart_while_process_exits(scene, fdstore):
    """Daemon A (with --fdstore or not), the upstream guest running a writer; SIGTERM A; while no
    daemon runs the writer writes its second half and exits 7, and the guest makes its reply to
    the wait; then daemon B starts with what the fd store holds. Returns (A, B, the writer's pid,
    its output path)."""
    args = ["--fdstore"] if fdstore else []
    a = scene.start(*args)
    scene.add_vm()
    pid, out = scene.writer(7)
    scene.until(lambda: scene.sim_stats().get("waits_received", 0) >= 1, "the daemon's wait in the guest")
    a_pid = a.pid
    scene.stop(a)
    stored = stored_datagrams(scene)
    if fdstore:
        assert len(stored) == 1, "FDSTORE=1 datagrams: %r\n%s" % (stored, scene.logs())
        fields, sender, nfds = stored[0]
        assert fields.get("FDNAME") == STORE_NAME, fields
        assert sender == a_pid, "FDSTORE=1 from pid %r, not the main pid %d" % (sender, a_pid)
        assert nfds == 1, "FDSTORE=1 carried %d fds, not 1" % nfds
        # What the manager still holds at B's start: nothing refused, nothing dropped at a hang-up.
        assert not scene.manager.dropped, scene.manager.dropped
        assert len(scene.manager.stored(STORE_NAME)) == 1, scene.manager.store
    else:
        assert not stored, "a plain stop stored fds: %r" % stored
    # No daemon runs: the writer finishes and exits, and the guest answers the wait.
    open(os.path.join(scene.tmp, "go"), "w").close()
    scene.until(lambda: os.path.exists(os.path.join(scene.tmp, "exited")), "the writer's end")
    st = scene.until(lambda: answered(scene), "the guest's answer to the wait (sent or panicked over)")
    if fdstore:
        assert st.get("bridge_panics") == 0, st
        assert scene.sim.poll() is None, "the guest died while no daemon ran\n" + scene.logs()
    b = scene.start(*args)
    return a, b, pid, out


def test_fdstore_restart_keeps_upstream_guest(paths, tmp):
    """Through the (mock) fd store: B takes over from the stored socket and removes it from the
    store; the writer's exit code is 7 and every byte reached the file once; hcsshim's guest never
    panicked, never lost or redialled its bridge or stdio, and still runs."""
    scene = Scene(paths, tmp)
    try:
        _, b, pid, out = restart_while_process_exits(scene, fdstore=True)
        assert b.passed_names == [STORE_NAME], b.passed_names
        expect_removed(scene, b)
        scene.until(lambda: "took over from systemd's fd store" in b.read_log(), "B's take-over from the store")
        assert "recovered" not in b.read_log(), "B recovered from the record instead\n" + scene.logs()
        r = scene.cli("wait", "demo", str(pid), check=False)
        assert r.returncode == 7, "wait: exit %d (%s %s), expected 7\n%s" % (r.returncode, r.stdout, r.stderr,
                                                                             scene.logs())
        scene.until(lambda: file_has(out, "\n%d\n" % (2 * LINES)), "the writer's second half")
        assert_seq(out, 2 * LINES, scene)
        # The VM serves on over the same bridge connection: a new exec runs.
        r = scene.cli("exec", "demo", "--", "sh", "-c", "echo after; exit 3", check=False)
        assert r.returncode == 3 and r.stdout == "after\n", (r.returncode, r.stdout, r.stderr, scene.logs())
        st = scene.sim_stats()
        assert st.get("bridge_panics") == 0, st
        assert st.get("bridge_connects") == 1, "the guest redialled its bridge: %r" % st
        assert st.get("bridge_losses") == 0, "the guest saw its bridge end: %r" % st
        assert st.get("stdio_redials") == 0, st
        assert st.get("replies_lost") == 0, st
        assert scene.sim.poll() is None, "the guest stopped\n" + scene.logs()
        assert scene.bridge() == "connected"
        # B stores in turn: a second restart through the store, with the same guest connection.
        scene.stop(b)
        assert len(stored_datagrams(scene)) == 2 and len(scene.manager.stored(STORE_NAME)) == 1, \
            (scene.manager.received, scene.manager.store)
        c = scene.start("--fdstore")
        expect_removed(scene, c, 2)
        r = scene.cli("exec", "demo", "--", "sh", "-c", "echo again; exit 4", check=False)
        assert r.returncode == 4 and r.stdout == "again\n", (r.returncode, r.stdout, r.stderr, scene.logs())
        assert scene.cli("wait", "demo", str(pid), check=False).returncode == 7
        st = scene.sim_stats()
        assert st.get("bridge_connects") == 1 and st.get("bridge_losses") == 0 and st.get("bridge_panics") == 0, st
        scene.stop(c)
    finally:
        scene.close()


def k8s_lines(path):
    """The lines a k8s-file log holds ("TIME STREAM P|F TEXT"; a P's text goes on in the next)."""
    lines, part = [], ""
    with open(path) as f:
        for rec in f.read().splitlines():
            _, _, tag, text = rec.split(" ", 3)
            part += text
            if tag == "F":
                lines.append(part)
                part = ""
    return lines


def test_k8s_log_through_store(paths, tmp):
    """A process logging to a k8s-file log (d0da3f2: its fd rides with the handover) across the
    restart through the store, exiting while no daemon runs: its log holds every line once, in
    order, and hcsshim's guest lives on."""
    scene = Scene(paths, tmp)
    try:
        a = scene.start("--fdstore")
        scene.add_vm()
        log = os.path.join(tmp, "c1.log")
        go, marker = os.path.join(tmp, "go"), os.path.join(tmp, "exited")
        script = ("seq 1 %d; while [ ! -e %s ]; do sleep 0.05; done; seq %d %d; touch %s; exit 7"
                  % (LINES, go, LINES + 1, 2 * LINES, marker))
        r = scene.cli("exec", "demo", "--detach", "--log", "k8s-file:" + log, "--", "sh", "-c", script)
        pid = int(r.stdout.split()[0])
        scene.until(lambda: file_has(log, " %d\n" % LINES), "the first half in the log")
        scene.stop(a)
        assert len(scene.manager.stored(STORE_NAME)) == 1, (scene.manager.received, scene.manager.store)
        open(go, "w").close()
        scene.until(lambda: os.path.exists(marker), "the writer's end")
        scene.until(lambda: answered(scene), "the guest's answer to the wait")
        b = scene.start("--fdstore")
        expect_removed(scene, b)
        r = scene.cli("wait", "demo", str(pid), check=False)
        assert r.returncode == 7, (r.returncode, r.stdout, r.stderr, scene.logs())
        scene.until(lambda: file_has(log, " %d\n" % (2 * LINES)), "the second half in the log")
        got = k8s_lines(log)
        assert got == [str(i) for i in range(1, 2 * LINES + 1)], (len(got), got[:3], got[-3:], scene.logs())
        st = scene.sim_stats()
        assert st.get("bridge_panics") == 0 and st.get("bridge_connects") == 1, st
        assert scene.sim.poll() is None, "the guest stopped\n" + scene.logs()
        scene.stop(b)
    finally:
        scene.close()


def test_plain_restart_panics_upstream_guest(paths, tmp):
    """The negative control: the same without --fdstore. The plain stop closes the bridge, the
    exit's reply is made with no connection up, and hcsshim's guest panics (exit status 2): what
    the fd store avoids, and proof that the test above can fail."""
    scene = Scene(paths, tmp)
    try:
        _, b, _, _ = restart_while_process_exits(scene, fdstore=False)
        assert STORE_NAME not in b.passed_names, b.passed_names
        code = scene.sim.wait(WAIT_S)
        assert code == 2, "the guest exited %r, not 2 (a panic)\n%s" % (code, scene.logs())
        assert scene.sim_stats().get("bridge_panics") == 1, scene.sim_stats()
        scene.stop(b)
    finally:
        scene.close()


def stored_handover_unreadable(paths, tmp, content):
    """A stored handover B cannot take (content(fd) writes it into a socketpair whose writer
    then closes) over a state dir that records a VM and its process from a plain stop: B logs
    why, recovers from the record, serves, and sends FDSTOREREMOVE=1."""
    scene = Scene(paths, tmp, upstream=False)
    try:
        a = scene.start()
        scene.add_vm()
        pid, _ = scene.writer(5)
        scene.stop(a)
        s, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        content(peer)
        peer.close()
        scene.manager.put(s.fileno(), STORE_NAME)
        s.close()
        b = scene.start("--fdstore")
        assert b.passed_names == [STORE_NAME], b.passed_names
        expect_removed(scene, b)
        scene.until(lambda: "recovered 1 VMs" in b.read_log(), "the recovery from the record")
        log = b.read_log()
        assert "took over from systemd's fd store" not in log, log
        # Our guest redials; the recovered process is the record's and finishes after the go.
        scene.until(lambda: scene.bridge() == "connected", "the guest's redial")
        ps = json.loads(scene.cli("ps", "demo", "--json").stdout)
        assert any(p.get("pid") == pid for p in ps), ps
        open(os.path.join(scene.tmp, "go"), "w").close()
        r = scene.cli("wait", "demo", str(pid), check=False)
        assert r.returncode == 5, (r.returncode, r.stdout, r.stderr, scene.logs())
        scene.stop(b)
        return log
    finally:
        scene.close()


def test_empty_stored_socket(paths, tmp):
    log = stored_handover_unreadable(paths, tmp, lambda peer: None)
    assert "fd store held no handover" in log, log


def test_refused_stored_socket(paths, tmp):
    """Bytes that are no handover: refused, with the reason logged; the rest as for an empty one."""
    log = stored_handover_unreadable(paths, tmp, lambda peer: peer.sendall(b"not a handover, just bytes\n" * 64))
    assert "cannot take over from systemd's fd store" in log, log


def test_newer_schema_stored_socket(paths, tmp):
    """A handover a newer vsockmuxd stored (a downgrade through `systemctl restart`; handover-peer
    writes one claiming schema 99): refused for its schema, the rest as for an empty one."""
    def newer(peer):
        r = subprocess.run(["sh", "-c", 'exec "$0" stored 99 3>&%d' % peer.fileno(), paths[3]],
                           pass_fds=(peer.fileno(),), capture_output=True, text=True, timeout=WAIT_S)
        assert r.returncode == 0, (r.returncode, r.stderr)
    log = stored_handover_unreadable(paths, tmp, newer)
    assert "cannot take over from systemd's fd store" in log and "state schema version 99" in log, log


def start_recovering(scene, pid, out):
    """A start with nothing in the store: the record brings the VM back, our guest redials, and the
    writer's exit (7) and every line arrive once."""
    b = scene.start("--fdstore")
    assert b.passed_names == [], b.passed_names
    scene.until(lambda: "recovered 1 VMs" in b.read_log(), "the recovery from the record")
    r = scene.cli("wait", "demo", str(pid), check=False)
    assert r.returncode == 7, (r.returncode, r.stdout, r.stderr, scene.logs())
    scene.until(lambda: file_has(out, "\n%d\n" % (2 * LINES)), "the writer's second half")
    assert_seq(out, 2 * LINES, scene)
    assert scene.sim_stats().get("bridge_connects") == 2, scene.sim_stats()
    scene.stop(b)


def test_store_fails_stops_plain_way(paths, tmp):
    """The notification socket is gone by the stop (the manager went away): the FDSTORE=1 send
    fails, the held VMs are taken back and the stop is the plain one, with a warning; the next
    start recovers from the record: with our guest (it redials and resends) the exit code and
    every byte once, as after any plain restart."""
    scene = Scene(paths, tmp, upstream=False)
    try:
        a = scene.start("--fdstore")
        scene.add_vm()
        pid, out = scene.writer(7)
        scene.manager.close()
        scene.stop(a)
        assert "stopping the plain way" in a.read_log(), scene.logs()
        scene.manager = Manager(tmp)
        open(os.path.join(scene.tmp, "go"), "w").close()
        start_recovering(scene, pid, out)
    finally:
        scene.close()


def test_attached_exec_rides_through(paths, tmp):
    """An attached `vsockmux exec -i` across the restart through the store, with hcsshim's guest:
    its control connection and the process's stdio are handed over too, so the CLI never sees
    the stop; what it feeds while no daemon runs and after reaches the process once, in order,
    and it exits with the process's code."""
    scene = Scene(paths, tmp)
    try:
        a = scene.start("--fdstore")
        scene.add_vm()
        with open(os.path.join(tmp, "cli.err"), "w") as err:
            p = subprocess.Popen([scene.cli_path, "--socket", scene.sock, "exec", "-i", "demo", "--", "sh", "-c",
                                  "cat; exit 6"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        got = bytearray()
        reader = threading.Thread(target=read_all, args=(p.stdout, got))
        reader.start()
        try:
            p.stdin.write(b"before\n")
            p.stdin.flush()
            scene.until(lambda: bytes(got) == b"before\n", "the process's echo of the first line")
            scene.stop(a)
            p.stdin.write(b"during\n")
            p.stdin.flush()
            b = scene.start("--fdstore")
            expect_removed(scene, b)
            assert p.poll() is None, "the attached CLI ended at the restart: %r\n%s" % (p.returncode, scene.logs())
            p.stdin.write(b"after\n")
            p.stdin.close()
            code = p.wait(WAIT_S)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            reader.join(WAIT_S)
            p.stdout.close()
        with open(os.path.join(tmp, "cli.err")) as f:
            cli_err = f.read()
        assert code == 6, "the attached exec exited %d: %s\n%s" % (code, cli_err, scene.logs())
        assert bytes(got) == b"before\nduring\nafter\n", (bytes(got), cli_err)
        st = scene.sim_stats()
        assert st.get("bridge_panics") == 0 and st.get("bridge_connects") == 1 and st.get("stdio_redials") == 0, st
        scene.stop(b)
    finally:
        scene.close()


def read_all(f, into):
    while True:
        chunk = f.read1(65536)
        if not chunk:
            return
        into.extend(chunk)


def test_fdstore_without_systemd(paths, tmp):
    """--fdstore with no NOTIFY_SOCKET (not started by systemd) says so at start, and its stop is
    the plain one at once: nothing held, frozen or handed over; the record has the VM."""
    daemon, cli_path, sim = paths[:3]
    os.environ.pop("NOTIFY_SOCKET", None)
    env = daemon_env.DaemonEnv(daemon, cli_path, sim, "vsockmux-fdstore-nosd.", ["--fdstore"])
    try:
        env.until(lambda: file_has(env.log, "--fdstore without NOTIFY_SOCKET"), "the warning at start")
        env.vm_with_sim("demo")
        env.daemon.send_signal(signal.SIGTERM)
        code = env.daemon.wait(WAIT_S)
        with open(env.log) as f:
            log = f.read()
        assert code == 0, log
        assert "handed over live" not in log and "migrating on" not in log, log
        assert "1 VMs recorded" in log, log
    finally:
        env.close()


def test_systemctl_stop_empties_store(paths, tmp):
    """`systemctl stop` after a stored stop closes what the store held (every connection with
    it): the next start gets nothing and recovers from the record written before the hold. With
    our guest (it redials and resends what was not delivered) the exit code is right and every
    byte reaches the file once."""
    scene = Scene(paths, tmp, upstream=False)
    try:
        a = scene.start("--fdstore")
        scene.add_vm()
        pid, out = scene.writer(7)
        scene.stop(a)
        assert len(scene.manager.stored(STORE_NAME)) == 1, (scene.manager.received, scene.manager.store)
        open(os.path.join(scene.tmp, "go"), "w").close()
        scene.until(lambda: os.path.exists(os.path.join(scene.tmp, "exited")), "the writer's end")
        scene.manager.flush()
        start_recovering(scene, pid, out)
    finally:
        scene.close()


def test_socket_activated_with_fdstore(paths, tmp):
    """A socket-activated unit: the control socket ("control") and the stored handover pass
    together (LISTEN_FDS=2, LISTEN_FDNAMES=control:vsockmux-handover); B serves the same socket
    file systemd bound, and the guest lives on as without activation."""
    scene = Scene(paths, tmp, activated=True)
    try:
        ino = os.stat(scene.sock).st_ino
        _, b, pid, out = restart_while_process_exits(scene, fdstore=True)
        assert b.passed_names == ["control", STORE_NAME], b.passed_names
        expect_removed(scene, b)
        assert os.stat(scene.sock).st_ino == ino, "the socket file systemd bound was replaced"
        r = scene.cli("wait", "demo", str(pid), check=False)
        assert r.returncode == 7, (r.returncode, r.stdout, r.stderr, scene.logs())
        scene.until(lambda: file_has(out, "\n%d\n" % (2 * LINES)), "the writer's second half")
        assert_seq(out, 2 * LINES, scene)
        st = scene.sim_stats()
        assert st.get("bridge_panics") == 0 and st.get("bridge_connects") == 1, st
        assert scene.sim.poll() is None, "the guest stopped\n" + scene.logs()
        scene.stop(b)
        assert os.stat(scene.sock).st_ino == ino, "the stop removed the socket file systemd bound"
    finally:
        scene.close()


def main():
    return daemon_env.run_tests_in_tmp(
        __doc__, 4,
        (test_fdstore_restart_keeps_upstream_guest, test_plain_restart_panics_upstream_guest,
         test_attached_exec_rides_through, test_k8s_log_through_store, test_empty_stored_socket,
         test_refused_stored_socket, test_newer_schema_stored_socket, test_store_fails_stops_plain_way,
         test_fdstore_without_systemd, test_systemctl_stop_empties_store, test_socket_activated_with_fdstore),
        "vsockmux-fdstore.", paths_as_list=True)


if __name__ == "__main__":
    sys.exit(main())
