"""tests/integration/daemon_env.py: one vsockmuxd in its own temp dir, the CLI against it and
simulated guests, for the Python integration tests. Every wait is bounded (WAIT_S); nothing
asserts a duration."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

WAIT_S = 60



def until(pred, what, diagnose):
    """pred()'s first true value, polled every 50 ms for WAIT_S; else fails with what and
    diagnose()'s text (the logs)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("waited in vain for %s\n%s" % (what, diagnose()))

class DaemonEnv:
    def __init__(self, daemon, cli, sim, prefix, args=(), before=None):
        """args: extra vsockmuxd options; "{tmp}" in one stands for the temp dir. before(tmp), if
        given, runs before the daemon starts (to write files its options name)."""
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        if before:
            before(self.tmp)
        self.cli_path, self.sim_path = cli, sim
        self.sock = os.path.join(self.tmp, "ctl.sock")
        self.log = os.path.join(self.tmp, "daemon.log")
        with open(self.log, "w") as log:
            self.daemon = subprocess.Popen([daemon, "--socket", self.sock, "--state-dir", os.path.join(self.tmp, "st"),
                                            "--hvsock-root", self.tmp]
                                           + [a.replace("{tmp}", self.tmp) for a in args], stdout=log, stderr=log)
        self.sims = []
        self.until(lambda: os.path.exists(self.sock), "the control socket")

    def until(self, pred, what):
        return until(pred, what, lambda: open(self.log).read())

    def cli(self, *args, check=True):
        r = subprocess.run([self.cli_path, "--socket", self.sock] + list(args), capture_output=True, text=True,
                           timeout=WAIT_S)
        if check and r.returncode != 0:
            raise AssertionError("vsockmux %s: exit %d: %s\n%s" % (" ".join(args), r.returncode, r.stderr,
                                                                   open(self.log).read()))
        return r

    def vm_with_sim(self, name):
        hv = os.path.join(self.tmp, name + ".hv")
        self.cli("vm", "add", name, "--hvsock", hv)
        self.sims.append(subprocess.Popen([self.sim_path, "--hvsock", hv], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        self.until(lambda: any(v["name"] == name and v["bridge"] == "connected"
                               for v in json.loads(self.cli("vm", "ls", "--json").stdout)), "the bridge")

    def close(self):
        for s in self.sims:
            s.kill()
            s.wait()
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
        if not os.environ.get("VSOCKMUX_INTEG_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)


def run_tests(doc, tests):
    """The main of a test file: argv is DAEMON CLI SIM; runs each test(daemon, cli, sim), says ok
    or FAIL (with the traceback) for each, and returns the exit code (1 if any failed)."""
    if len(sys.argv) < 4:
        print(doc, file=sys.stderr)
        return 2
    daemon, cli, sim = sys.argv[1:4]
    failed = 0
    for test in tests:
        try:
            test(daemon, cli, sim)
            print("ok", test.__name__)
        except Exception:
            failed += 1
            print("FAIL", test.__name__)
            traceback.print_exc()
    return 1 if failed else 0


def run_tests_in_tmp(doc, nargs, tests, prefix, paths_as_list=False):
    """The main of a test file whose tests each take argv's nargs paths (one list with
    paths_as_list) and a fresh temporary directory (kept with VSOCKMUX_INTEG_KEEP;
    VSOCKMUX_TEST_ONLY runs only the tests whose name has it): says ok or FAIL (with the traceback)
    for each, and returns the exit code."""
    if len(sys.argv) != nargs + 1:
        print(doc, file=sys.stderr)
        return 2
    paths = sys.argv[1:]
    only = os.environ.get("VSOCKMUX_TEST_ONLY")
    keep = os.environ.get("VSOCKMUX_INTEG_KEEP")
    failed = 0
    for test in tests:
        if only and only not in test.__name__:
            continue
        tmp = tempfile.mkdtemp(prefix=prefix)
        try:
            if paths_as_list:
                test(paths, tmp)
            else:
                test(*paths, tmp)
            print("ok", test.__name__, flush=True)
        except Exception:
            failed += 1
            print("FAIL", test.__name__, "(kept %s)" % tmp if keep else "", flush=True)
            traceback.print_exc()
        finally:
            if not keep:
                shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0
