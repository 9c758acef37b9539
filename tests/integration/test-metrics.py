#!/usr/bin/python3
"""The daemon's metrics read by a real consumer, python3-prometheus-client's text parser: the
families and types, per-VM numbers that match what the test made happen (bytes relayed, a failed
endpoint's error and dropped bytes, a cap hit, bridge connects), `stats --vm` and the per-stream
error fields of `ps --json`.

Usage: test-metrics.py DAEMON CLI SIM. Every wait is bounded (60 s); nothing asserts a duration."""
import http.client
import json
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import daemon_env  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("SKIP: python3-prometheus-client is not installed (scripts/setup.sh installs it)")
    sys.exit(77)

WAIT_S = daemon_env.WAIT_S


class Env(daemon_env.DaemonEnv):
    def __init__(self, daemon, cli, sim, args=()):
        super().__init__(daemon, cli, sim, "vsockmux-metrics.", args)

    def metrics(self):
        text = self.cli("stats", "--prometheus").stdout
        return {f.name: f for f in text_string_to_metric_families(text)}, text


def sample(families, family, **labels):
    """The value of the one sample of family (or family + suffix) with exactly these labels."""
    f = families[family]
    name = labels.pop("_name", None) or f.name + ("_total" if f.type == "counter" else "")
    found = [s.value for s in f.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, "%s%r: %r" % (name, labels, f.samples)
    return found[0]


EXPECTED = {
    "vsockmux_vms": "gauge",
    "vsockmux_bytes_relayed": "counter",
    "vsockmux_bytes_spliced": "counter",
    "vsockmux_buffer_pool_buffers_in_use": "gauge",
    "vsockmux_buffer_pool_buffers_touched": "gauge",
    "vsockmux_buffer_pool_buffers_max": "gauge",
    "vsockmux_buffer_pool_buffer_bytes": "gauge",
    "vsockmux_control_connections": "gauge",
    "vsockmux_control_connections_evicted": "counter",
    "vsockmux_control_connections_refused": "counter",
    "vsockmux_cap_hits": "counter",
    "vsockmux_vm_processes": "gauge",
    "vsockmux_vm_streams": "gauge",
    "vsockmux_vm_stream_bytes": "counter",
    "vsockmux_vm_stream_errors": "counter",
    "vsockmux_vm_dropped_bytes": "counter",
    "vsockmux_vm_bridge_connects": "counter",
    "vsockmux_vm_bridge_reconnects": "counter",
    "vsockmux_vm_held_replies": "gauge",
    "vsockmux_vm_held_replies_dropped": "counter",
    "vsockmux_vm_save_duration_seconds": "histogram",
    "vsockmux_vm_restore_duration_seconds": "histogram",
}


def test_families_and_values(daemon, cli, sim):
    e = Env(daemon, cli, sim, ["--max-vms", "1"])
    try:
        families, text = e.metrics()
        for name, kind in EXPECTED.items():
            assert name in families, "no family %s in\n%s" % (name, text)
            assert families[name].type == kind, "%s is %s, not %s" % (name, families[name].type, kind)
        assert sample(families, "vsockmux_vms") == 0

        e.vm_with_sim("vm1")
        out = os.path.join(e.tmp, "out")
        # Detached: no stdin stream (an attached exec's stdin, unread by a process that exits, may
        # end reset, an error this test does not want). --keep-stderr: a stderr kept for attach
        # counts what the guest sent on it (without it, --stdout alone would give no stderr).
        pid = e.cli("exec", "vm1", "--detach", "--stdout", out, "--keep-stderr", "--", "sh", "-c",
                    "printf 0123456789; printf abc >&2").stdout.strip()
        e.cli("wait", "vm1", pid)
        # A cap hit: --max-vms 1 refuses a second VM.
        r = e.cli("vm", "add", "vm2", "--hvsock", os.path.join(e.tmp, "vm2.hv"), check=False)
        assert r.returncode != 0, r

        families, text = e.metrics()
        assert sample(families, "vsockmux_vms") == 1
        assert sample(families, "vsockmux_vm_processes", vm="vm1") == 1
        assert sample(families, "vsockmux_vm_stream_bytes", vm="vm1", stream="stdout", direction="from_guest") == 10
        assert sample(families, "vsockmux_vm_stream_bytes", vm="vm1", stream="stderr", direction="from_guest") == 3
        assert sample(families, "vsockmux_vm_stream_bytes", vm="vm1", stream="stdin", direction="to_guest") == 0
        assert sample(families, "vsockmux_vm_bridge_connects", vm="vm1") == 1
        assert sample(families, "vsockmux_vm_bridge_reconnects", vm="vm1") == 0
        assert sample(families, "vsockmux_vm_stream_errors", vm="vm1") == 0, \
            "%s\n%s" % (e.cli("ps", "vm1", "--json").stdout, open(e.log).read())
        assert sample(families, "vsockmux_cap_hits", cap="max_vms") == 1
        assert sample(families, "vsockmux_cap_hits", cap="max_processes") == 0
        assert sample(families, "vsockmux_control_connections") >= 1
        assert sample(families, "vsockmux_vm_save_duration_seconds", vm="vm1",
                      _name="vsockmux_vm_save_duration_seconds_count") == 0
        assert sample(families, "vsockmux_vm_save_duration_seconds", vm="vm1", le="+Inf",
                      _name="vsockmux_vm_save_duration_seconds_bucket") == 0

        st = json.loads(e.cli("stats", "--vm", "vm1", "--json").stdout)
        assert st["vm"] == "vm1" and st["processes"] == 1 and st["stdout_bytes"] == 10 and st["stderr_bytes"] == 3, st
        r = e.cli("stats", "--vm", "nope", check=False)
        assert r.returncode != 0 and "unknown VM" in r.stderr, r
    finally:
        e.close()


def test_endpoint_error_counted(daemon, cli, sim):
    """An endpoint that goes away mid-stream: the stream's error and the bytes it could not
    deliver show in ps --json and in the metrics (they were only logged before)."""
    e = Env(daemon, cli, sim)
    try:
        e.vm_with_sim("vm1")
        ep = os.path.join(e.tmp, "ep.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(ep)
        srv.listen(1)
        go = os.path.join(e.tmp, "go")
        # The process writes once the endpoint is gone, so those bytes can only be dropped.
        pid = e.cli("exec", "vm1", "--detach", "--stdout", ep, "--", "sh", "-c",
                    "while [ ! -e %s ]; do sleep 0.05; done; head -c 200000 /dev/zero" % go).stdout.strip()
        conn, _ = srv.accept()
        conn.close()
        srv.close()
        open(go, "w").close()
        e.cli("wait", "vm1", pid, check=False)
        procs = json.loads(e.cli("ps", "vm1", "--json").stdout)
        p = [p for p in procs if str(p["pid"]) == pid][0]
        assert p["errors"]["stdout"] != "", p
        assert p["errors"]["stderr"] == "", p
        assert p["dropped"]["stdout"] > 0, p
        families, _ = e.metrics()
        assert sample(families, "vsockmux_vm_stream_errors", vm="vm1") >= 1
        assert sample(families, "vsockmux_vm_dropped_bytes", vm="vm1") == p["dropped"]["stdout"]
    finally:
        e.close()


def test_control_caps_counted(daemon, cli, sim):
    """The control server's caps are counted: a connection refused at --max-connections (every
    open one has a call in flight) and a request over the control frame limit."""
    e = Env(daemon, cli, sim, ["--max-connections", "2", "--log-level", "debug"])
    waits = []
    try:
        e.vm_with_sim("vm1")
        go = os.path.join(e.tmp, "go")
        pid = e.cli("exec", "vm1", "--detach", "--", "sh", "-c",
                    "while [ ! -e %s ]; do sleep 0.05; done" % go).stdout.strip()
        # Two waits hold both connections with a call in flight.
        for _ in range(2):
            waits.append(subprocess.Popen([e.cli_path, "--socket", e.sock, "wait", "vm1", pid],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        e.until(lambda: open(e.log).read().count("calls vsockmux.v1.Control/Wait") == 2, "two waits in flight")
        r = e.cli("vm", "ls", check=False)
        assert r.returncode != 0 and "--max-connections" in r.stderr, r
        open(go, "w").close()
        for w in waits:
            w.wait(WAIT_S)
        # A request header announcing 4 MiB + 1 bytes: refused on its length, then closed.
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(e.sock)
        raw.sendall(bytes([0x00, 0x40, 0x00, 0x01, 0, 0, 0, 1, 1, 0]))
        raw.settimeout(WAIT_S)
        while raw.recv(4096):
            pass
        raw.close()
        families, text = e.metrics()
        assert sample(families, "vsockmux_control_connections_refused") == 1, text
        assert sample(families, "vsockmux_cap_hits", cap="max_connections") >= 1, text
        assert sample(families, "vsockmux_cap_hits", cap="max_control_frame") == 1, text
        assert sample(families, "vsockmux_cap_hits", cap="max_calls_per_connection") == 0, text
    finally:
        for w in waits:
            if w.poll() is None:
                w.kill()
                w.wait()
        e.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=WAIT_S)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT_S)
        self.sock.connect(self.unix_path)


def http_get(conn, method, path, body=None):
    conn.request(method, path, body=body)
    r = conn.getresponse()
    data = r.read().decode()
    conn.close()
    return r, data


def test_metrics_listen(daemon, cli, sim):
    """--metrics-listen: GET /metrics in the text format over loopback TCP (port 0, read back from
    the log) and over a Unix socket; numbers the scrape shows are those of what happened before
    it; another path is 404, a POST 405; a garbage client does not disturb the next scrape."""
    unix = None
    e = Env(daemon, cli, sim, ["--metrics-listen", "127.0.0.1:0", "--max-vms", "1"])
    try:
        m = e.until(lambda: re.search(r"metrics on http://(127\.0\.0\.1):(\d+)/metrics", open(e.log).read()),
                    "the metrics address in the log")
        host, port = m.group(1), int(m.group(2))

        def tcp():
            return http.client.HTTPConnection(host, port, timeout=WAIT_S)

        r, text = http_get(tcp(), "GET", "/metrics")
        assert r.status == 200, (r.status, text)
        assert r.getheader("Content-Type").startswith("text/plain; version=0.0.4"), r.getheaders()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        for name, kind in EXPECTED.items():
            assert name in families and families[name].type == kind, "%s in\n%s" % (name, text)
        assert sample(families, "vsockmux_vms") == 0

        e.vm_with_sim("vm1")
        r = e.cli("vm", "add", "vm2", "--hvsock", os.path.join(e.tmp, "vm2.hv"), check=False)
        assert r.returncode != 0, r
        r, text = http_get(tcp(), "GET", "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert sample(families, "vsockmux_vms") == 1, text
        assert sample(families, "vsockmux_vm_bridge_connects", vm="vm1") == 1, text
        assert sample(families, "vsockmux_cap_hits", cap="max_vms") == 1, text

        r, body = http_get(tcp(), "GET", "/")
        assert r.status == 404, (r.status, body)
        r, body = http_get(tcp(), "GET", "/metrics/x")
        assert r.status == 404, (r.status, body)
        r, body = http_get(tcp(), "POST", "/metrics", body="x=1")
        assert r.status == 405 and "GET" in (r.getheader("Allow") or ""), (r.status, r.getheaders(), body)
        r, body = http_get(tcp(), "HEAD", "/metrics")
        assert r.status == 200, r.status

        # Garbage, then a half request left open: neither costs the next scrape.
        g = socket.create_connection((host, port), timeout=WAIT_S)
        g.sendall(b"\x00\xff garbage \r\n\r\n")
        half = socket.create_connection((host, port), timeout=WAIT_S)
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        r, text = http_get(tcp(), "GET", "/metrics")
        assert r.status == 200 and "vsockmux_vms 1" in text, (r.status, text)
        g.close()
        half.close()
        assert e.daemon.poll() is None, open(e.log).read()
    finally:
        e.close()



def test_metrics_listen_unix(daemon, cli, sim):
    """A Unix socket: created 0600 like the control socket, served, removed at stop."""
    e = Env(daemon, cli, sim, ["--metrics-listen", "{tmp}/metrics.sock"])
    path = os.path.join(e.tmp, "metrics.sock")
    try:
        e.until(lambda: os.path.exists(path), "the metrics socket")
        assert os.stat(path).st_mode & 0o777 == 0o600, oct(os.stat(path).st_mode)
        r, text = http_get(UnixHTTPConnection(path), "GET", "/metrics")
        assert r.status == 200, (r.status, text)
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert sample(families, "vsockmux_vms") == 0
        r, body = http_get(UnixHTTPConnection(path), "PUT", "/metrics", body="x")
        assert r.status == 405, r.status
        e.daemon.send_signal(signal.SIGTERM)
        assert e.daemon.wait(WAIT_S) == 0, open(e.log).read()
        assert not os.path.exists(path), "the metrics socket outlived the daemon"
    finally:
        e.close()


def test_metrics_listen_refused(daemon, cli, sim):
    """An address that is not loopback, or not an address, stops the daemon at start (exit 2)."""
    tmp = tempfile.mkdtemp(prefix="vsockmux-metrics.")
    try:
        for addr, why in (("0.0.0.0:9464", "loopback"), ("192.0.2.1:80", "loopback"),
                          ("127.0.0.1:65536", "port"), ("localhost:9464", "numeric"), ("9464", "HOST:PORT"),
                          ("relative/path", "HOST:PORT")):
            r = subprocess.run([daemon, "--socket", os.path.join(tmp, "c.sock"), "--state-dir", tmp,
                                "--metrics-listen", addr], capture_output=True, text=True, timeout=WAIT_S)
            assert r.returncode == 2 and "--metrics-listen" in r.stderr and why in r.stderr, (addr, r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    return daemon_env.run_tests(__doc__, (test_families_and_values, test_endpoint_error_counted, test_control_caps_counted,
                                             test_metrics_listen, test_metrics_listen_unix, test_metrics_listen_refused))


if __name__ == "__main__":
    sys.exit(main())
