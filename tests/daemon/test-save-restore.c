/* Save on one daemon, restore on another: two struct vmm on one real relay loop (two daemons in
 * one process), the real guest simulator (sim/vsockmux-sim) dialling over hybrid vsock, real
 * processes writing real bytes to real files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/exec-id.h"
#include "daemon/journal.h"
#include "daemon/record.h"
#include "daemon/savestate.h"
#include "daemon/vmm.h"
#include "ports/ports.h"
#include "relay/relay.h"
#include "tests/daemon/fifo-endpoint.h"
#include "tests/daemon/vmm-test.h"
#include "tests/io-uring-skip.h"
#include "tests/sim-stats.h"

extern char **environ;

/* Bounds on waiting on a loaded machine under ASan; nothing here asserts speed. */
#define WAIT_NS (180ull * 1000000000ull)
#define STEP_NS (10ll * 1000000ll)

struct fixture {
        char dir[64];
        char state_a[96], state_b[96];
        struct relay_transport transport;
        struct relay *r;
        struct vmm *a, *b;
        pid_t sim;
        bool upstream;     /* the simulator plays hcsshim's guest (--fidelity upstream) */
        bool no_stdin_eof; /* the simulator runs with --no-stdin-eof */
        bool no_panic;     /* with upstream: --no-bridge-panic, a reply made while disconnected is lost */
        char stats[96];    /* the simulator's --stats file */
        struct test_endpoints *ep;
};

/* Runs the loop until *flag is nonzero; fails the test past WAIT_NS. */
static void run_until(struct fixture *f, const int *flag, const char *what)
{
        uint64_t deadline = now_ns() + WAIT_NS;

        while (!*flag) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("timed out waiting for %s", what);
        }
}

static void run_for(struct fixture *f, uint64_t ns)
{
        uint64_t end = now_ns() + ns;

        while (now_ns() < end)
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
}

static void sim_start(struct fixture *f, bool resume)
{
        char *argv[] = { (char *)sim_path(),
                         "--hvsock",
                         f->transport.uds_path,
                         "--stats",
                         f->stats,
                         f->upstream       ? "--fidelity=upstream"
                         : !resume         ? "--no-resume"
                         : f->no_stdin_eof ? "--no-stdin-eof"
                                           : NULL,
                         f->upstream && f->no_panic ? "--no-bridge-panic" : NULL,
                         NULL };

        assert_int_equal(posix_spawn(&f->sim, argv[0], NULL, NULL, argv, environ), 0);
}

/* One count from the simulator's --stats file (sim/stats.c), 0 before it wrote one. */
static unsigned long long sim_stat(struct fixture *f, const char *name)
{
        return sim_stats_get(f->stats, name);
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct vmm_config cfg;

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/vsockmux-sr-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->state_a, sizeof(f->state_a), "%s/a", f->dir);
        snprintf(f->state_b, sizeof(f->state_b), "%s/b", f->dir);
        snprintf(f->stats, sizeof(f->stats), "%s/sim.stats", f->dir);
        f->transport.kind = RELAY_TRANSPORT_HVSOCK;
        snprintf(f->transport.uds_path, sizeof(f->transport.uds_path), "%s/vm.vsock", f->dir);
        assert_int_equal(relay_new(NULL, &f->r), 0);
        vmm_config_default(&cfg);
        cfg.state_dir = f->state_a;
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &f->a), 0);
        cfg.state_dir = f->state_b;
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &f->b), 0);
        f->sim = -1;
        f->ep = test_endpoints_new();
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char cmd[128];

        if (f->sim > 0) {
                kill(f->sim, SIGKILL);
                waitpid(f->sim, NULL, 0);
        }
        vmm_free(f->a);
        vmm_free(f->b);
        relay_run_once(f->r, 0);
        relay_free(f->r);
        f->ep = test_endpoints_free(f->ep);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

/* Runs the loop until vm's bridge is connected (or, with connected false, is not); fails the test
 * past WAIT_NS. */
static void run_until_bridge(struct fixture *f, struct vmm_vm *vm, bool connected, const char *what)
{
        uint64_t deadline = now_ns() + WAIT_NS;

        while ((vmm_vm_bridge_state(vm) == BRIDGE_CONN_CONNECTED) != connected) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("timed out waiting for %s", what);
        }
}

static struct vmm_vm *add_vm_connected(struct fixture *f, bool resume)
{
        struct vmm_vm *vm;

        assert_int_equal(vmm_vm_add(f->a, "demo", &f->transport, &vm), 0);
        sim_start(f, resume);
        run_until_bridge(f, vm, true, "the simulator's bridge");
        return vm;
}

static uint32_t exec_ok(struct fixture *f, struct vmm_vm *vm, const char *script, const char *out)
{
        const char *argv[] = { "sh", "-c", script };
        struct vmm_exec_params params = { .argv = argv, .n_argv = 3, .stdout_path = test_endpoint(f->ep, out) };
        struct started st = { 0 };
        struct vmm_error err = {};

        assert_int_equal(vmm_exec(vm, &params, on_started, &st, &err), 0);
        run_until(f, &st.count, "the exec");
        if (st.error)
                fail_msg("exec failed: %s", st.message);
        return st.pid;
}

static size_t file_size(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

static char *slurp(struct fixture *f, const char *path, size_t *ret_len)
{
        FILE *fp;
        size_t len;
        char *buf;

        test_endpoints_settle(f->ep);
        fp = fopen(path, "rb");
        len = file_size(path);
        buf = malloc(len + 1);

        assert_non_null(fp);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, len, fp), len);
        buf[len] = '\0';
        fclose(fp);
        *ret_len = len;
        return buf;
}

/* A process writing numbered lines through the whole handover. */
#define WRITER_LINES 4000
static const char writer[] = "i=0; while [ $i -lt 4000 ]; do echo line $i; i=$((i+1)); "
                             "[ $((i % 100)) -eq 0 ] && sleep 0.05; done; exit 7";

static void wait_for_output(struct fixture *f, const char *path, size_t min)
{
        uint64_t deadline = now_ns() + WAIT_NS;

        while (file_size(path) < min) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("no output reached %s", path);
        }
}

static struct saved save_vm(struct fixture *f, struct vmm_vm *vm)
{
        struct saved sv = { 0 };
        struct vmm_error err = {};

        assert_int_equal(vmm_save(vm, on_saved, &sv, &err), 0);
        run_until(f, &sv.count, "the save");
        assert_int_equal(sv.error, 0);
        assert_true(vmm_vm_is_saved(vm));
        return sv;
}

static struct vmm_vm *restore_vm(struct fixture *f, struct saved *sv, uint32_t pid, const char *out)
{
        struct vmm_restore_io io = { .pid = pid, .path = { NULL, test_endpoint(f->ep, out), NULL } };
        struct vmm_vm *vm = NULL;
        struct vmm_error err = {};
        int r;

        r = vmm_restore(f->b, sv->blob, sv->len, NULL, NULL, &io, out ? 1 : 0, &vm, &err);
        if (r < 0)
                fail_msg("restore failed: %s", err.message);
        return vm;
}

static void wait_exit(struct fixture *f, struct vmm_vm *vm, uint32_t pid, struct exited *ex)
{
        struct vmm_process *p = vmm_process_find(vm, pid);
        struct vmm_waiter *w = NULL;
        int r;

        assert_non_null(p);
        r = vmm_process_wait(p, on_exit_seen, ex, &w, &ex->exit);
        if (r == 1) {
                ex->count = 1;
                return;
        }
        assert_int_equal(r, 0);
        run_until(f, &ex->count, "the exit");
}

/* Every line 0..n-1 exactly once, in order. */
static void assert_lines_exact(const char *buf, size_t len, int n)
{
        const char *p = buf;

        for (int i = 0; i < n; i++) {
                char want[32];
                int wl = snprintf(want, sizeof(want), "line %d\n", i);

                if ((size_t)(p - buf) + (size_t)wl > len || memcmp(p, want, (size_t)wl) != 0)
                        fail_msg("output differs at line %d (offset %zu)", i, (size_t)(p - buf));
                p += wl;
        }
        assert_int_equal((size_t)(p - buf), len);
}

/* A vmm over dir that keeps a record, as vsockmuxd's default, in place of old (freed). */
static struct vmm *recording_vmm(struct fixture *f, struct vmm *old, const char *dir)
{
        struct vmm_config cfg;
        struct vmm *m = NULL;

        vmm_free(old);
        vmm_config_default(&cfg);
        cfg.state_dir = dir;
        cfg.record = true;
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &m), 0);
        return m;
}

static void test_output_moves_exactly_once_across_save_and_restore(void **state)
{
        struct fixture *f = *state;
        char out_a[128], out_b[128];
        struct vmm_vm *vm, *vb;
        struct exited ex = { 0 };
        struct saved sv;
        size_t la, lb;
        uint32_t pid;

        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        snprintf(out_b, sizeof(out_b), "%s/out-b", f->dir);
        vm = add_vm_connected(f, true);
        pid = exec_ok(f, vm, writer, out_a);
        wait_for_output(f, out_a, 1000);
        assert_int_equal(sim_stat(f, "bridge_connects"), 1);
        assert_int_equal(sim_stat(f, "stdio_redials"), 0);
        sv = save_vm(f, vm);
        /* The guest keeps writing and redialling while nobody listens. */
        run_for(f, 300ull * 1000000ull);
        vb = restore_vm(f, &sv, pid, out_b);
        wait_exit(f, vb, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 7);
        /* A save and restore costs the guest a reconnect and a redial (a live upgrade does not). */
        assert_int_equal(sim_stat(f, "bridge_connects"), 2);
        assert_true(sim_stat(f, "stdio_redials") >= 1);
        {
                _cleanup_free_ char *a = slurp(f, out_a, &la), *b = slurp(f, out_b, &lb), *all = malloc(la + lb + 1);

                assert_true(la > 0);
                assert_true(lb > 0);
                memcpy(all, a, la);
                memcpy(all + la, b, lb);
                assert_lines_exact(all, la + lb, WRITER_LINES);
        }
        test_endpoints_assert_spliced(f->ep, f->r);
        free(sv.blob);
}

/* stdin across a save and a restore: a reader mid-way through its --stdin file when the VM is
 * saved here and restored on the other daemon, which opens the same file. */
#define STDIN_BYTES (3u << 20) /* more than every buffer between the file and the process */
#define STDIN_FIRST 1000000u   /* what the reader takes before it waits for "go" */

static void write_input(const char *path)
{
        FILE *fp = fopen(path, "we");
        uint64_t x = 0x2545f4914f6cdd1dull;

        assert_non_null(fp);
        for (size_t i = 0; i < STDIN_BYTES; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                assert_int_not_equal(fputc((int)(x & 0xff), fp), EOF);
        }
        assert_int_equal(fclose(fp), 0);
}

/* Returns how many bytes reached the reader's copy, after checking they are the input's first. */
static size_t stdin_across_save_and_restore(struct fixture *f)
{
        char in[128], copy[128], go[128], script[512];
        const char *argv[] = { "sh", "-c", script };
        struct vmm_exec_params params = { .argv = argv, .n_argv = 3, .stdin_path = in };
        struct vmm_restore_io io = { .path = { in, NULL, NULL } };
        struct started st = { 0 };
        struct exited ex = { 0 };
        struct vmm_error err = {};
        struct vmm_vm *vm, *vb = NULL;
        struct saved sv;
        size_t la, lc;
        uint64_t deadline = now_ns() + WAIT_NS;

        snprintf(in, sizeof(in), "%s/in", f->dir);
        snprintf(copy, sizeof(copy), "%s/copy", f->dir);
        snprintf(go, sizeof(go), "%s/go", f->dir);
        snprintf(script, sizeof(script),
                 "{ dd bs=%u count=1 iflag=fullblock 2>/dev/null; while [ ! -e %s ]; do sleep 0.05; done; cat; } > %s; "
                 "exit 7",
                 STDIN_FIRST, go, copy);
        write_input(in);
        vm = add_vm_connected(f, true);
        assert_int_equal(vmm_exec(vm, &params, on_started, &st, &err), 0);
        run_until(f, &st.count, "the exec");
        if (st.error)
                fail_msg("exec failed: %s", st.message);
        while (file_size(copy) < STDIN_FIRST) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("the reader did not start");
        }
        sv = save_vm(f, vm);
        run_for(f, 300ull * 1000000ull);
        io.pid = st.pid;
        if (vmm_restore(f->b, sv.blob, sv.len, NULL, NULL, &io, 1, &vb, &err) < 0)
                fail_msg("restore failed: %s", err.message);
        close(open(go, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
        wait_exit(f, vb, st.pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 7);
        {
                _cleanup_free_ char *a = slurp(f, in, &la), *c = slurp(f, copy, &lc);

                if (lc > la || memcmp(a, c, lc) != 0)
                        fail_msg("the copy (%zu bytes) is not the input's first bytes", lc);
        }
        free(sv.blob);
        return lc;
}

static void test_stdin_file_goes_on_exactly_across_save_and_restore(void **state)
{
        assert_int_equal(stdin_across_save_and_restore(*state), STDIN_BYTES);
}

/* The plain upstream case: without the stdin end confirmation the guest takes the source's close
 * at the save for stdin's end, and the reader gets a short input. */
static void test_upstream_case_stdin_ends_at_the_save_without_the_end_confirmation(void **state)
{
        struct fixture *f = *state;
        size_t n;

        f->no_stdin_eof = true;
        n = stdin_across_save_and_restore(f);
        fprintf(stderr, "without the stdin end confirmation: %zu of %u stdin bytes\n", n, STDIN_BYTES);
        assert_true(n >= STDIN_FIRST);
        assert_true(n < STDIN_BYTES);
}

static void test_legacy_guest_loses_nothing_and_may_duplicate(void **state)
{
        struct fixture *f = *state;
        char out_a[128], out_b[128];
        struct vmm_vm *vm, *vb;
        struct exited ex = { 0 };
        struct saved sv;
        size_t la, lb;
        uint32_t pid;
        int next = 0;

        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        snprintf(out_b, sizeof(out_b), "%s/out-b", f->dir);
        vm = add_vm_connected(f, false);
        pid = exec_ok(f, vm, writer, out_a);
        wait_for_output(f, out_a, 1000);
        sv = save_vm(f, vm);
        run_for(f, 300ull * 1000000ull);
        vb = restore_vm(f, &sv, pid, out_b);
        wait_exit(f, vb, pid, &ex);
        assert_int_equal(ex.exit.code, 7);
        {
                _cleanup_free_ char *a = slurp(f, out_a, &la), *b = slurp(f, out_b, &lb);
                char *p, *save = NULL;

                /* At-least-once: the destination may start with a replayed tail of what the source
                 * already delivered, but every line arrives, in order, none missing. */
                for (p = strtok_r(a, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
                        assert_int_equal(atoi(p + 5), next);
                        next++;
                }
                save = NULL;
                for (p = strtok_r(b, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
                        int n = atoi(p + 5);

                        assert_true(n <= next);
                        if (n == next)
                                next++;
                }
                assert_int_equal(next, WRITER_LINES);
        }
        free(sv.blob);
}

struct done {
        int count;
        int error;
};

static void on_done(int error, const char *message, void *userdata)
{
        struct done *d = userdata;

        d->count++;
        d->error = error;
}

static void create_container(struct fixture *f, struct vmm_vm *vm, const char *id)
{
        struct done d = { 0 };

        assert_int_equal(vmm_container_create(vm, id, NULL, on_done, &d), 0);
        run_until(f, &d.count, "the container");
        assert_int_equal(d.error, 0);
}

static uint32_t exec_in(struct fixture *f, struct vmm_vm *vm, const char *container, const char *script,
                        const char *out)
{
        const char *argv[] = { "sh", "-c", script };
        struct vmm_exec_params params = {
                .container_id = container, .argv = argv, .n_argv = 3, .stdout_path = test_endpoint(f->ep, out)
        };
        struct started st = { 0 };
        struct vmm_error err = {};

        assert_int_equal(vmm_exec(vm, &params, on_started, &st, &err), 0);
        run_until(f, &st.count, "the exec");
        if (st.error)
                fail_msg("exec failed: %s", st.message);
        return st.pid;
}

/* Waits, without running the loop (no daemon holds the VM), until the simulator counted `name`. */
static void wait_sim_stat(struct fixture *f, const char *name, unsigned long long min)
{
        uint64_t deadline = now_ns() + WAIT_NS;

        /* The loop runs meanwhile: what the simulator waits for may be a close the daemon has
         * only queued. */
        while (sim_stat(f, name) < min) {
                if (now_ns() > deadline)
                        fail_msg("the simulator never counted %s %llu", name, min);
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
        }
}

/* The process exits while no daemon holds the VM: saved, then let go through a gate the test
 * opens only then. With hcsshim's guest the restore waits until the simulator lost the wait's
 * answer, so the exit is in the blackout whatever the machine's load; ours answers only once the
 * process's stdout is back (W9), after the restore. */
static void exit_during_blackout(struct fixture *f, const char *container, struct exited *ex)
{
        char out_a[128], gate_path[128], script[256];
        struct vmm_vm *vm, *vb;
        struct saved sv;
        uint32_t pid;
        _cleanup_close_ int gate = -1;

        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        snprintf(gate_path, sizeof(gate_path), "%s/gate", f->dir);
        assert_int_equal(mkfifo(gate_path, 0600), 0);
        gate = open(gate_path, O_RDWR | O_CLOEXEC);
        assert_true(gate >= 0);
        snprintf(script, sizeof(script), "echo started; read x < %s; exit 5", gate_path);
        vm = add_vm_connected(f, true);
        if (container)
                create_container(f, vm, container);
        pid = exec_in(f, vm, container, script, out_a);
        wait_for_output(f, out_a, 8);
        /* The exit must find the wait the daemon sent at the start: a save before the guest read it
         * leaves the guest nothing to answer (or lose) at the exit. */
        for (uint64_t deadline = now_ns() + WAIT_NS; sim_stat(f, "waits_received") < 1;) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("the simulator never read the WaitForProcess");
        }
        sv = save_vm(f, vm);
        /* The exit must come once the guest saw its bridge connection end: before that, its answer
         * could go into a socket the source has not closed yet, and be neither lost nor held by the
         * simulator's count (seen once with the splice run beside it). */
        wait_sim_stat(f, "bridge_losses", 1);
        assert_int_equal(write(gate, "\n", 1), 1);
        if (f->upstream)
                wait_sim_stat(f, "replies_lost", 1);
        vb = restore_vm(f, &sv, pid, NULL);
        {
                /* Not back yet (the loop has not run): its waits are only pre-registered, nothing to
                 * hand on, so a save is refused with a reason, and the restore carries on. */
                struct saved again = { 0 };
                struct vmm_error err = {};

                assert_int_equal(vmm_save(vb, on_saved, &again, &err), -EBUSY);
                assert_non_null(strstr(err.message, "has not reconnected yet"));
                assert_int_equal(again.count, 0);
        }
        wait_exit(f, vb, pid, ex);
        free(sv.blob);
}

/* Ours keeps the wait's answer while disconnected and sends it on the next connection. */
static void test_exit_during_blackout_reaches_the_destination(void **state)
{
        struct fixture *f = *state;
        struct exited ex = { 0 };

        exit_during_blackout(f, NULL, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 5);
        assert_int_equal(sim_stat(f, "replies_lost"), 0);
}

/* hcsshim's guest panics at an answer made while its bridge is down, and its VM stops (sim/bridge.c);
 * with --no-bridge-panic it loses the answer with the connection and deletes an exec'd process once
 * its wait is answered: the destination's probe finds no process, and the exit is "lost", never 0.
 * The counts show the branch: the only answers sent on a connection were "not found". */
static void test_upstream_exec_exit_during_blackout_is_lost_and_said_so(void **state)
{
        struct fixture *f = *state;
        struct exited ex = { 0 };

        f->upstream = true;
        f->no_panic = true;
        exit_during_blackout(f, NULL, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_LOST);
        /* Counted just after the write: the daemon may have read it first. */
        wait_sim_stat(f, "wait_not_found_sent", 1);
        assert_int_equal(sim_stat(f, "wait_exited_sent"), 0);
        assert_int_equal(sim_stat(f, "replies_lost"), 1);
}

/* A container's init stays known to hcsshim's guest after its exit: the answer to the source's wait
 * is lost (--no-bridge-panic: hcsshim's guest would panic, above), and the exit code reaches the
 * destination through its probe, the one answer carrying a code that the simulator sent. */
static void test_upstream_init_exit_during_blackout_comes_from_the_probe(void **state)
{
        struct fixture *f = *state;
        struct exited ex = { 0 };

        f->upstream = true;
        f->no_panic = true;
        exit_during_blackout(f, "c1", &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 5);
        wait_sim_stat(f, "wait_exited_sent", 1);
        assert_int_equal(sim_stat(f, "replies_lost"), 1);
        assert_int_equal(sim_stat(f, "wait_exited_sent"), 1);
}

/* After the guest's bridge dropped (SIGUSR1) and came back: its kept wait was probed. */
static struct vmm_vm *vm_reconnected(struct fixture *f, bool upstream)
{
        char out[128];
        struct vmm_vm *vm;

        f->upstream = upstream;
        snprintf(out, sizeof(out), "%s/out", f->dir);
        vm = add_vm_connected(f, !upstream);
        (void)exec_ok(f, vm, "sleep 600", out); /* its wait is probed when the guest comes back */
        assert_int_equal(kill(f->sim, SIGUSR1), 0);
        run_until_bridge(f, vm, false, "the simulator's reset to reach the bridge");
        run_until_bridge(f, vm, true, "the simulator's reconnect");
        return vm;
}

/* Past the probe's 50 ms: had the daemon let go of the bridge too soon, the guest would be gone. */
static void assert_upstream_guest_lives_on(struct fixture *f)
{
        int status;

        run_for(f, 300ull * 1000000ull);
        assert_int_equal(waitpid(f->sim, &status, WNOHANG), 0);
        assert_int_equal(sim_stat(f, "bridge_panics"), 0);
        assert_int_equal(sim_stat(f, "wait_timeout_sent"), 1);
}

/* hcsshim's guest answers a reconnect probe (TimeoutInMs 50) on a timer and panics, stopping its VM,
 * if its bridge connection is gone by then (sim/bridge.c, docs/hcsshim-guest.md): a save right after
 * the guest reconnected lets go of the connection only once the probe is answered, and the guest
 * lives on. Fails without the wait: the simulator ends with status 2. */
static void test_upstream_save_right_after_a_reconnect_waits_for_its_probe(void **state)
{
        struct fixture *f = *state;
        struct saved sv = save_vm(f, vm_reconnected(f, true));

        free(sv.blob);
        assert_upstream_guest_lives_on(f);
}

/* The same for a SIGTERM right after the reconnect, as vsockmuxd stops (daemon_flush(): quiesce,
 * the loop until nothing is pending, then the recorded stop and the VMs go): the bridge connection
 * closes once the probe is answered. Fails without the wait: the simulator panics. */
static void test_upstream_stop_right_after_a_reconnect_waits_for_its_probe(void **state)
{
        struct fixture *f = *state;
        uint64_t deadline = now_ns() + WAIT_NS;

        /* vsockmuxd's default: a record, so the stop is the recorded one. */
        f->a = recording_vmm(f, f->a, f->state_a);
        (void)vm_reconnected(f, true);
        (void)vmm_quiesce(f->a);
        while (vmm_quiesce_pending(f->a) > 0) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("the stop's flush never ended");
        }
        assert_int_equal(vmm_stop_recorded(f->a, "vsockmuxd stopped"), 1);
        f->a = vmm_free(f->a);
        assert_upstream_guest_lives_on(f);
}

struct removed {
        int count, error;
};

static void on_removed(int error, const char *message, void *userdata)
{
        struct removed *rm = userdata;

        rm->count++;
        rm->error = error;
}

/* The same for the control API's removal right after the reconnect: the VM goes once the probe
 * is answered, and so does its bridge connection. Fails without the wait: the simulator panics. */
static void test_upstream_removal_right_after_a_reconnect_waits_for_its_probe(void **state)
{
        struct fixture *f = *state;
        struct removed rm = { 0 };

        (void)vm_reconnected(f, true);
        assert_int_equal(vmm_vm_remove_when_answered(f->a, "demo", on_removed, &rm), 0);
        run_until(f, &rm.count, "the removal");
        assert_int_equal(rm.count, 1);
        assert_int_equal(rm.error, 0);
        assert_null(vmm_vm_find(f->a, "demo"));
        assert_upstream_guest_lives_on(f);
}

/* A stop while removals wait for the guest's probe (the VM still listed; the flush counts the
 * probe): the stop removes the VM instead of recording it, and each removal is answered. Without
 * the flush's loop turn the bridge closes before the answer: the guest loses it (--no-bridge-panic). */
static void test_removals_waiting_when_the_daemon_stops_are_done_by_the_stop(void **state)
{
        struct fixture *f = *state;
        struct removed one = { 0 }, two = { 0 };

        f->a = recording_vmm(f, f->a, f->state_a);
        f->no_panic = true;
        (void)vm_reconnected(f, true);
        assert_int_equal(vmm_vm_remove_when_answered(f->a, "demo", on_removed, &one), 0);
        assert_int_equal(vmm_vm_remove_when_answered(f->a, "demo", on_removed, &two), 0);
        assert_int_equal(one.count + two.count, 0);
        assert_non_null(vmm_vm_find(f->a, "demo"));
        assert_int_equal(vmm_quiesce(f->a), 1); /* the probe */
        assert_int_equal(vmm_stop_recorded(f->a, "vsockmuxd stopped"), 0);
        assert_int_equal(one.count, 1);
        assert_int_equal(one.error, 0);
        assert_int_equal(two.count, 1);
        assert_int_equal(two.error, 0);
        assert_null(vmm_vm_find(f->a, "demo"));
        f->a = vmm_free(f->a);
}

/* Our guest keeps an answer for its next connection: a removal right after a reconnect is done at
 * once, its probe unanswered. */
static void test_removal_of_a_resume_guest_is_done_at_once(void **state)
{
        struct fixture *f = *state;
        struct removed rm = { 0 };
        struct vmm_vm *vm = vm_reconnected(f, false);

        assert_int_equal(bridge_host_unanswered_probes(vmm_vm_bridge(vm)), 1);
        assert_int_equal(vmm_vm_remove_when_answered(f->a, "demo", on_removed, &rm), 0);
        assert_int_equal(rm.count, 1);
        assert_int_equal(rm.error, 0);
        assert_null(vmm_vm_find(f->a, "demo"));
        assert_int_equal(vmm_vm_remove_when_answered(f->a, "demo", on_removed, &rm), -ENOENT);
        assert_int_equal(rm.count, 1);
}

struct exit_with_size {
        struct exited ex;
        const char *path;
        size_t size; /* of path when the exit was reported */
        struct test_endpoints *ep;
};

static void on_exit_size(struct vmm_process *p, const struct vmm_exit *exit, void *userdata)
{
        struct exit_with_size *e = userdata;

        test_endpoints_settle(e->ep);
        e->size = file_size(e->path);
        on_exit_seen(p, exit, &e->ex);
}

/* hcsshim's guest may answer a wait before the process's stdout reached EOF: the exit is reported
 * only once all of that output is at the endpoint. A child left behind holds stdout open behind a
 * gate the test opens, so the wait's reply always comes first, whether the wait reached the guest
 * before the exit or after it. */
static void test_upstream_exit_is_reported_only_after_the_output_drained(void **state)
{
        struct fixture *f = *state;
        char out[128], gate[128], cmd[512];
        struct exit_with_size e = { .path = out, .ep = f->ep };
        struct vmm_waiter *w = NULL;
        struct vmm_vm *vm;
        uint64_t deadline;
        uint32_t pid;
        int r;

        f->upstream = true;
        snprintf(out, sizeof(out), "%s/out", f->dir);
        snprintf(gate, sizeof(gate), "%s/gate", f->dir);
        snprintf(cmd, sizeof(cmd), "(head -c 3000000 /dev/zero; until [ -e %s ]; do sleep 0.02; done) & exit 4", gate);
        vm = add_vm_connected(f, false);
        pid = exec_ok(f, vm, cmd, out);
        r = vmm_process_wait(vmm_process_find(vm, pid), on_exit_size, &e, &w, &e.ex.exit);
        assert_int_equal(r, 0);
        deadline = now_ns() + WAIT_NS;
        while (sim_stat(f, "wait_exited_sent") < 1) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("the simulator never answered the wait");
        }
        /* The reply is on its way or read; stdout is still open, so no exit yet. */
        run_for(f, 200ull * 1000000ull);
        assert_int_equal(e.ex.count, 0);
        assert_int_equal(close(open(gate, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)), 0);
        run_until(f, &e.ex.count, "the exit");
        assert_int_equal(e.ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(e.ex.exit.code, 4);
        assert_int_equal(e.size, 3000000);
        test_endpoints_assert_spliced(f->ep, f->r);
}

/* hcsshim's guest redials a container init's stdout after a move and goes on with what it had not
 * written yet: what it had written is in the kernel's queue at the save, and only the freeze's
 * drain delivers it. The guest is paused for the save, as a migration's last phase pauses the VM,
 * after writing into the socket while the loop did not read. Every line arrives at least once, in
 * order; duplicates are counted and printed. */
static void test_upstream_init_output_arrives_whole_across_save_and_restore(void **state)
{
        struct fixture *f = *state;
        char out_a[128], out_b[128];
        struct vmm_vm *vm, *vb;
        struct exited ex = { 0 };
        struct saved sv;
        size_t la, lb;
        uint32_t pid;
        int next = 0, dups = 0;

        f->upstream = true;
        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        snprintf(out_b, sizeof(out_b), "%s/out-b", f->dir);
        vm = add_vm_connected(f, false);
        create_container(f, vm, "c1");
        pid = exec_in(f, vm, "c1", writer, out_a);
        wait_for_output(f, out_a, 1000);
        usleep(100000);
        {
                int status;

                /* kill() returns before the guest has stopped: wait until it has. */
                assert_int_equal(kill(f->sim, SIGSTOP), 0);
                assert_int_equal(waitpid(f->sim, &status, WUNTRACED), f->sim);
                assert_true(WIFSTOPPED(status));
        }
        sv = save_vm(f, vm);
        assert_int_equal(kill(f->sim, SIGCONT), 0);
        run_for(f, 300ull * 1000000ull);
        vb = restore_vm(f, &sv, pid, out_b);
        wait_exit(f, vb, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 7);
        {
                _cleanup_free_ char *a = slurp(f, out_a, &la), *b = slurp(f, out_b, &lb);
                char *p, *save = NULL;

                for (p = strtok_r(a, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
                        assert_int_equal(atoi(p + 5), next);
                        next++;
                }
                save = NULL;
                for (p = strtok_r(b, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
                        int n = atoi(p + 5);

                        if (n > next)
                                fail_msg("line %d missing at the destination (got line %d)", next, n);
                        if (n < next)
                                dups++;
                        else
                                next++;
                }
                assert_int_equal(next, WRITER_LINES);
                print_message("%d duplicate lines at the destination\n", dups);
        }
        free(sv.blob);
}

/* hcsshim's guest never redials an exec's stdio after a move. The destination waits for no stream
 * that has no connection and no redial coming: with a drain timeout longer than the test's own
 * wait, the exit arrives only through that branch. */
static void test_upstream_stream_not_redialled_does_not_hold_the_exit(void **state)
{
        struct fixture *f = *state;
        char out_a[128], out_b[128], state_c[128];
        struct vmm_config cfg;
        struct vmm_vm *vm, *vc;
        struct vmm_restore_io io = { 0 };
        struct exited ex = { 0 };
        struct vmm *c = NULL;
        struct saved sv;
        struct vmm_error err = {};
        uint32_t pid;

        f->upstream = true;
        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        snprintf(out_b, sizeof(out_b), "%s/out-b", f->dir);
        snprintf(state_c, sizeof(state_c), "%s/c", f->dir);
        vmm_config_default(&cfg);
        cfg.state_dir = state_c;
        cfg.drain_timeout_ns = 3600ull * 1000000000ull;
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &c), 0);

        vm = add_vm_connected(f, false);
        pid = exec_ok(f, vm, "echo started; sleep 1; exit 5", out_a);
        wait_for_output(f, out_a, 8);
        sv = save_vm(f, vm);
        run_for(f, 300ull * 1000000ull);
        io = (struct vmm_restore_io){ .pid = pid, .path = { NULL, out_b, NULL } };
        if (vmm_restore(c, sv.blob, sv.len, NULL, NULL, &io, 1, &vc, &err) < 0)
                fail_msg("restore failed: %s", err.message);
        wait_exit(f, vc, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 5);
        assert_int_equal(file_size(out_b), 0);
        free(sv.blob);
        vmm_free(c);
}

/* ---- a live upgrade: the VM goes to the other daemon with its connections ---- */

static void on_held(struct vmm_vm *vm, void *userdata)
{
        *(int *)userdata = 1;
}

static void on_hold_gone(struct vmm_vm *vm, void *userdata)
{
        *(int *)userdata = -1;
}

static const struct vmm_vm_freeze_ops hold_ops = { .on_frozen = on_held, .on_gone = on_hold_gone };

/* Daemon a holds the VM, hands it out with its fds; the state goes through its wire form, and
 * daemon b takes it over. The guest never notices: one bridge connection, no stdio redial, the
 * output in the one file exactly once, the exit code from the wait a sent. */
static void live_handover(struct fixture *f)
{
        _cleanup_free_ uint8_t *wire = NULL;
        Vsockmux__State__Vm out, *in;
        struct vmm_fds fds = { 0 };
        struct vmm_error err = {};
        struct exited ex = { 0 };
        struct vmm_vm *vm, *vb = NULL;
        char out_a[128];
        _cleanup_free_ char *all = NULL;
        size_t len;
        uint32_t pid;
        int held = 0;

        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        vm = add_vm_connected(f, true);
        pid = exec_ok(f, vm, writer, out_a);
        wait_for_output(f, out_a, 1000);
        assert_int_equal(vmm_vm_hold(vm, &hold_ops, &held, &err), 0);
        run_until(f, &held, "the hold");
        assert_int_equal(held, 1);
        if (vmm_vm_hand_over(vm, &out, &fds, &err) < 0)
                fail_msg("hand over: %s", err.message);
        assert_true(fds.n >= 3); /* the bridge's listener and connection, stdout's connection and file */
        len = vsockmux__state__vm__get_packed_size(&out);
        wire = malloc(len + 1);
        assert_non_null(wire);
        vsockmux__state__vm__pack(&out, wire);
        vmm_vm_export_done(&out);
        in = vsockmux__state__vm__unpack(NULL, len, wire);
        assert_non_null(in);
        /* The guest goes on writing while nobody reads: it waits in the sockets. */
        run_for(f, 100ull * 1000000ull);
        if (vmm_adopt(f->b, in, fds.fds, fds.n, &vb, &err) < 0)
                fail_msg("adopt: %s", err.message);
        vsockmux__state__vm__free_unpacked(in, NULL);
        for (size_t i = 0; i < fds.n; i++)
                assert_int_equal(fds.fds[i], -1); /* every fd was taken */
        free(fds.fds);
        assert_int_equal(vmm_vm_bridge_state(vb), BRIDGE_CONN_CONNECTED);
        wait_exit(f, vb, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 7);
        all = slurp(f, out_a, &len);
        assert_lines_exact(all, len, WRITER_LINES);
        assert_int_equal(sim_stat(f, "bridge_connects"), 1);
        assert_int_equal(sim_stat(f, "stdio_redials"), 0);
}

static void test_live_handover_moves_the_vm_and_the_guest_never_notices(void **state)
{
        live_handover(*state);
}

static void test_upstream_live_handover_moves_the_vm_and_the_guest_never_notices(void **state)
{
        struct fixture *f = *state;

        f->upstream = true;
        live_handover(f);
}

/* A rollback before the hand-over: the VM serves on, nothing lost or repeated. */
/* Holds vm, hands it out and returns the state as the wire carries it (the caller frees it). */
/* Hands a held vm over, through the wire format as a live upgrade sends it. */
static Vsockmux__State__Vm *hand_over_held(struct vmm_vm *vm, struct vmm_fds *fds)
{
        Vsockmux__State__Vm out, *in;
        struct vmm_error err = {};
        uint8_t *wire;
        size_t len;

        if (vmm_vm_hand_over(vm, &out, fds, &err) < 0)
                fail_msg("hand over: %s", err.message);
        len = vsockmux__state__vm__get_packed_size(&out);
        wire = malloc(len + 1);
        assert_non_null(wire);
        vsockmux__state__vm__pack(&out, wire);
        vmm_vm_export_done(&out);
        in = vsockmux__state__vm__unpack(NULL, len, wire);
        free(wire);
        assert_non_null(in);
        return in;
}

static Vsockmux__State__Vm *hand_out(struct fixture *f, struct vmm_vm *vm, struct vmm_fds *fds)
{
        struct vmm_error err = {};
        int held = 0;

        assert_int_equal(vmm_vm_hold(vm, &hold_ops, &held, &err), 0);
        run_until(f, &held, "the hold");
        assert_int_equal(held, 1);
        return hand_over_held(vm, fds);
}

/* Moves vm (an exited process, "exit 3", and a running one) from a to b, giving the exited one the
 * running one's pid on the way, as if the guest's kernel had reused it. Returns b's VM; *ret_id:
 * the exited one's exec id, *ret_pid: the pid both entries have. */
static struct vmm_vm *adopt_with_a_reused_pid(struct fixture *f, const char *running, char *ret_id, size_t id_len,
                                              uint32_t *ret_pid)
{
        struct vmm_fds fds = { 0 };
        struct vmm_error err = {};
        struct vmm_process_info info;
        struct exited first = { 0 };
        struct vmm_vm *vm, *vb = NULL;
        Vsockmux__State__Vm *in;
        char out_a[128], out_b[128];
        uint32_t a, b;

        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        snprintf(out_b, sizeof(out_b), "%s/out-b", f->dir);
        vm = add_vm_connected(f, true);
        a = exec_ok(f, vm, "exit 3", out_a);
        wait_exit(f, vm, a, &first);
        assert_int_equal(first.exit.code, 3);
        vmm_process_get_info(vmm_process_find(vm, a), &info);
        snprintf(ret_id, id_len, "%s", info.exec_id);
        b = exec_ok(f, vm, running, out_b);
        in = hand_out(f, vm, &fds);
        assert_int_equal(in->n_processes, 2);
        assert_int_equal(in->processes[0]->pid, a);
        in->processes[0]->pid = b;
        if (vmm_adopt(f->b, in, fds.fds, fds.n, &vb, &err) < 0)
                fail_msg("adopt: %s", err.message);
        vsockmux__state__vm__free_unpacked(in, NULL);
        free(fds.fds);
        assert_int_equal(vmm_vm_process_count(vb), 2);
        *ret_pid = b;
        return vb;
}

/* A pid the guest reused names two entries, one exited and one running: a hand-over handed back
 * moves the running one's waiter to the running one, which alone can tell it its exit. */
static void test_handed_back_waiter_stays_with_its_process_when_a_pid_was_reused(void **state)
{
        struct fixture *f = *state;
        struct vmm_fds back = { 0 };
        struct vmm_error err = {};
        struct exited ex = { 0 };
        struct vmm_waiter *w = NULL;
        struct vmm_vm *vb;
        Vsockmux__State__Vm *in;
        char id_a[128];
        uint32_t b;

        /* The guest hands the running one's pid to the exited process too. */
        vb = adopt_with_a_reused_pid(f, "sleep 2; exit 7", id_a, sizeof(id_a), &b);
        /* The newest entry of the pid is the running one: the waiter is its. */
        assert_int_equal(vmm_process_wait(vmm_process_find(vb, b), on_exit_seen, &ex, &w, &ex.exit), 0);
        in = hand_out(f, vb, &back);
        if (vmm_take_back(f->b, in, back.fds, back.n, &err) < 0)
                fail_msg("take back: %s", err.message);
        vsockmux__state__vm__free_unpacked(in, NULL);
        free(back.fds);
        assert_int_equal(ex.count, 0); /* not told the exited entry's exit */
        run_until(f, &ex.count, "the exit");
        assert_int_equal(ex.count, 1);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 7);
}

/* The exited entry of a reused pid, found by its exec id, still has its own exit code. */
static void assert_exited_entry_kept(struct vmm_vm *vm, const char *exec_id, uint32_t pid, int code)
{
        struct vmm_process *p = vmm_process_find_id(vm, exec_id);
        struct vmm_process_info info;
        struct exited ex = { 0 };
        struct vmm_waiter *w = NULL;

        assert_non_null(p);
        vmm_process_get_info(p, &info);
        assert_int_equal(info.pid, pid);
        assert_int_equal(vmm_process_wait(p, on_exit_seen, &ex, &w, &ex.exit), 1);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, code);
}

/* The saved state names a process by its exec id: a save of a VM whose guest reused a pid (one
 * entry exited, one running) succeeds, and the restored VM holds both, each with its own exit. An
 * endpoint the restore names by pid is the newest entry's (the exited one's stdout had ended). */
static void test_save_and_restore_keep_both_entries_of_a_reused_pid(void **state)
{
        struct fixture *f = *state;
        struct vmm_process_info info;
        struct vmm_restore_io io = { 0 };
        struct vmm_error err = {};
        struct exited ex = { 0 };
        struct vmm_vm *vb, *vr = NULL;
        struct saved sv;
        char id_a[128], out_c[128];
        uint32_t pid;

        snprintf(out_c, sizeof(out_c), "%s/out-c", f->dir);
        vb = adopt_with_a_reused_pid(f, "sleep 1; echo late; exit 7", id_a, sizeof(id_a), &pid);
        /* a's VM was handed over: its name and transport are free for the restore. */
        assert_int_equal(vmm_vm_remove(f->a, "demo"), 0);
        sv = save_vm(f, vb);
        io = (struct vmm_restore_io){ .pid = pid, .path = { NULL, test_endpoint(f->ep, out_c), NULL } };
        if (vmm_restore(f->a, sv.blob, sv.len, NULL, NULL, &io, 1, &vr, &err) < 0)
                fail_msg("restore: %s", err.message);
        free(sv.blob);
        assert_int_equal(vmm_vm_remove(f->b, "demo"), 0);
        assert_int_equal(vmm_vm_process_count(vr), 2);
        assert_exited_entry_kept(vr, id_a, pid, 3);
        /* The pid finds the newest entry: the running one, which goes on to its own exit. */
        vmm_process_get_info(vmm_process_find(vr, pid), &info);
        assert_string_not_equal(info.exec_id, id_a);
        assert_false(info.exit_known);
        wait_exit(f, vr, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 7);
        assert_exited_entry_kept(vr, id_a, pid, 3);
        {
                _cleanup_free_ char *got = NULL;
                size_t len;

                got = slurp(f, out_c, &len);
                assert_string_equal(got, "late\n");
        }
}

/* A daemon that did not stop (as after a crash: the record stays as the loop last wrote it) and a
 * new one that recovers from the record. */
static struct vmm_vm *crash_and_recover(struct fixture *f, const struct vmm_config *cfg)
{
        struct vmm_vm *vm;

        vmm_free(f->b);
        assert_int_equal(vmm_new(f->r, cfg, NULL, NULL, &f->b), 0);
        assert_int_equal(vmm_recover(f->b), 0);
        vm = vmm_vm_find(f->b, "demo");
        assert_non_null(vm);
        return vm;
}

/* The record names a process by its exec id too: its snapshot holds both entries of a reused pid,
 * its journal the running one's exit (a change of the pid, which has two entries) and then the
 * exited one forgotten by its exec id, and each crash recovers exactly that. */
static void test_record_recovers_the_entries_of_a_reused_pid(void **state)
{
        struct fixture *f = *state;
        struct vmm_process_info info;
        struct vmm_config cfg;
        struct vmm_vm *vb;
        char id_a[128], id_b[128];
        uint32_t pid;

        vmm_free(f->a);
        vmm_free(f->b);
        vmm_config_default(&cfg);
        cfg.record = true;
        cfg.state_dir = f->state_a;
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &f->a), 0);
        cfg.state_dir = f->state_b;
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &f->b), 0);
        vb = adopt_with_a_reused_pid(f, "sleep 1; exit 7", id_a, sizeof(id_a), &pid);
        vmm_process_get_info(vmm_process_find(vb, pid), &info);
        snprintf(id_b, sizeof(id_b), "%s", info.exec_id);
        /* The snapshot is written on the next pass, with both running; the exit goes to its journal. */
        run_for(f, 100ull * 1000000ull);
        assert_false(info.exit_known);
        assert_exited_entry_kept(vb, id_a, pid, 3);
        {
                struct exited ex = { 0 };

                wait_exit(f, vb, pid, &ex);
                assert_int_equal(ex.exit.code, 7);
        }
        run_for(f, 100ull * 1000000ull);

        vb = crash_and_recover(f, &cfg);
        assert_int_equal(vmm_vm_process_count(vb), 2);
        assert_exited_entry_kept(vb, id_a, pid, 3);
        assert_exited_entry_kept(vb, id_b, pid, 7);
        /* The recovery's snapshot, then the older entry forgotten: the journal names it by exec id. */
        run_for(f, 100ull * 1000000ull);
        assert_int_equal(vmm_process_delete(vmm_process_find_id(vb, id_a)), 0);
        run_for(f, 100ull * 1000000ull);

        vb = crash_and_recover(f, &cfg);
        assert_int_equal(vmm_vm_process_count(vb), 1);
        assert_null(vmm_process_find_id(vb, id_a));
        assert_exited_entry_kept(vb, id_b, pid, 7);
}

/* A Restore as the control server has it: handled among a turn's completions (a NOP's here). */
struct restore_in_a_completion {
        struct relay_op op;
        struct fixture *f;
        struct saved *sv;
        int done;
};

static void restore_on_completion(struct relay *r, struct relay_op *op, int res, uint32_t cqe_flags)
{
        struct restore_in_a_completion *c = container_of(op, struct restore_in_a_completion, op);

        (void)restore_vm(c->f, c->sv, 0, NULL);
        c->done = 1;
}

/* The restore's reply leaves before its record's snapshot is encoded: the reply is only queued
 * until the next turn's submit, and the snapshot (the whole VM) waits for that turn. It was
 * encoded in the restore's own turn, a quarter of the call's work ahead of the reply. */
static void test_restores_record_snapshot_waits_for_the_turn_its_reply_leaves_in(void **state)
{
        struct fixture *f = *state;
        struct restore_in_a_completion c = { .op.fn = restore_on_completion, .f = f };
        struct io_uring_sqe *sqe;
        char snapshot[160];
        uint64_t deadline;
        struct saved sv;

        f->b = recording_vmm(f, f->b, f->state_b);
        snprintf(snapshot, sizeof(snapshot), "%s/" VMM_RECORD_DIR "/demo.state", f->state_b);
        sv = save_vm(f, add_vm_connected(f, true));
        c.sv = &sv;
        sqe = relay_get_sqe(f->r);
        assert_non_null(sqe);
        io_uring_prep_nop(sqe);
        relay_sqe_set_op(sqe, &c.op);
        run_until(f, &c.done, "the restore");
        /* Every write the restore's turn queued has landed: no snapshot among them. */
        vmm_records_pause(f->b);
        assert_int_equal(access(snapshot, F_OK), -1);
        /* And it comes a turn later (resumed, the VM is marked whole again). */
        vmm_records_resume(f->b);
        deadline = now_ns() + WAIT_NS;
        while (access(snapshot, F_OK) < 0) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("the restored VM's record was never written");
        }
        free(sv.blob);
}

/* The guest's side of a dial over hybrid vsock: a connection to the port's listener, or -errno. */
static int port_connect(struct fixture *f, uint32_t port)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_true((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", f->transport.uds_path, port) <
                    sizeof(sa.sun_path));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno;
        return TAKE_FD(fd);
}

/* The guest's side of a redial. */
static int guest_dial(struct fixture *f, uint32_t port)
{
        int fd = port_connect(f, port);

        assert_true(fd >= 0);
        return fd;
}

/* Whether anything listens on port. */
static bool port_listened(struct fixture *f, uint32_t port)
{
        int fd = port_connect(f, port);

        safe_close(fd);
        return fd >= 0;
}

/* hcsshim's guest (upstream) runs a container init that writes "started\n" into path, closes its
 * stdout, then runs `then`; the daemon keeps the ended stream and its port for a redial. */
static struct vmm_vm *init_whose_stdout_ended(struct fixture *f, const char *then, char *path, size_t path_len,
                                              uint32_t *ret_pid, struct vmm_process_info *ret_info)
{
        char script[256];
        struct vmm_vm *vm;

        f->upstream = true;
        snprintf(path, path_len, "%s/out", f->dir);
        snprintf(script, sizeof(script), "echo started; exec >&-; %s", then);
        vm = add_vm_connected(f, false);
        create_container(f, vm, "c1");
        *ret_pid = exec_in(f, vm, "c1", script, path);
        wait_for_output(f, path, 8);
        run_for(f, 300ull * 1000000ull);
        vmm_process_get_info(vmm_process_find(vm, *ret_pid), ret_info);
        assert_int_not_equal(ret_info->ports[VMM_STDOUT], 0);
        return vm;
}

/* hcsshim's guest redials a container init's stdout after a drop, and a drop can look like the
 * end, so a stream that ended is kept for it. A redial that comes while a live upgrade holds the
 * VM must not resume that stream: its bytes would move after the freeze, past the counts handed
 * over, and what the old daemon had read but not delivered would die with it. It joins the
 * freeze instead: its bytes wait in the socket for the new daemon, which delivers them once. */
static void test_upstream_redial_of_an_ended_stream_during_a_hold_waits_for_the_new_daemon(void **state)
{
        struct fixture *f = *state;
        struct vmm_process_info info;
        Vsockmux__State__Vm *in;
        struct vmm_fds fds = { 0 };
        struct vmm_error err = {};
        struct vmm_vm *vm, *vb = NULL;
        _cleanup_free_ char *got = NULL;
        char path[128];
        uint32_t pid;
        size_t len;
        int held = 0, fd;

        vm = init_whose_stdout_ended(f, "sleep 600", path, sizeof(path), &pid, &info);
        assert_int_equal(vmm_vm_hold(vm, &hold_ops, &held, &err), 0);
        run_until(f, &held, "the hold");
        assert_int_equal(held, 1);
        /* Held, nothing moves: the redial is accepted, its bytes stay in its socket. */
        fd = guest_dial(f, info.ports[VMM_STDOUT]);
        assert_int_equal(write(fd, "late\n", 5), 5);
        run_for(f, 300ull * 1000000ull);
        got = slurp(f, path, &len);
        assert_string_equal(got, "started\n");
        in = hand_over_held(vm, &fds);
        f->a = vmm_free(f->a);
        if (vmm_adopt(f->b, in, fds.fds, fds.n, &vb, &err) < 0)
                fail_msg("adopt: %s", err.message);
        vsockmux__state__vm__free_unpacked(in, NULL);
        free(fds.fds);
        wait_for_output(f, path, 13);
        free(got);
        got = slurp(f, path, &len);
        assert_string_equal(got, "started\nlate\n");
        close(fd);
}

/* The same stream, handed over before the guest redialled: the new daemon keeps it as the old one
 * did, its listener and its relay stream, so hcsshim's redial lands there and what the guest
 * writes into it reaches the endpoint. It closed the listener of every stream exported as done:
 * the redial found nothing and the output was lost. */
static void test_upstream_redial_of_an_ended_stream_after_a_hand_over_reaches_the_new_daemon(void **state)
{
        struct fixture *f = *state;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct vmm_process_info info;
        struct vmm_fds fds = { 0 };
        struct vmm_error err = {};
        struct exited ex = { 0 };
        struct vmm_vm *vm, *vb = NULL;
        Vsockmux__State__Vm *in;
        _cleanup_free_ char *got = NULL;
        char path[128];
        uint32_t pid;
        size_t len;
        int fd;

        vm = init_whose_stdout_ended(f, "sleep 4; exit 7", path, sizeof(path), &pid, &info);
        in = hand_out(f, vm, &fds);
        f->a = vmm_free(f->a);
        if (vmm_adopt(f->b, in, fds.fds, fds.n, &vb, &err) < 0)
                fail_msg("adopt: %s", err.message);
        vsockmux__state__vm__free_unpacked(in, NULL);
        free(fds.fds);
        run_for(f, 100ull * 1000000ull);
        /* Still running, its exit unreported: the port stays open for the redial. */
        vmm_process_get_info(vmm_process_find(vb, pid), &info);
        assert_int_not_equal(info.ports[VMM_STDOUT], 0);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_true((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", f->transport.uds_path,
                                     info.ports[VMM_STDOUT]) < sizeof(sa.sun_path));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                fail_msg("the redial after the hand-over: %s", strerror(errno));
        assert_int_equal(write(fd, "late\n", 5), 5);
        wait_for_output(f, path, 13);
        got = slurp(f, path, &len);
        assert_string_equal(got, "started\nlate\n");
        /* Dropped again, it is redialled again: the adopted port listens for every redial, as
         * the old daemon's did, not for one. */
        close(fd);
        run_for(f, 100ull * 1000000ull);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                fail_msg("the second redial after the hand-over: %s", strerror(errno));
        assert_int_equal(write(fd, "later\n", 6), 6);
        wait_for_output(f, path, 19);
        free(got);
        got = slurp(f, path, &len);
        assert_string_equal(got, "started\nlate\nlater\n");
        close(fd);
        /* The new daemon reports the exit, and only then lets the port go. */
        wait_exit(f, vb, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 7);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), -1);
        close(fd);
}

/* An exec whose stdin is a fifo the test holds open for writing (*ret_wfd), so it never ends by
 * itself, with "hello\n" through it and on to its stdout. Without the end confirmation CloseStdin
 * freezes the stream; with it (end_confirmed) it half-closes it. */
static struct vmm_vm *exec_on_a_fifo_stdin(struct fixture *f, const char *script, bool end_confirmed, uint32_t *ret_pid,
                                           int *ret_wfd)
{
        const char *argv[] = { "sh", "-c", script };
        struct vmm_exec_params params = { .argv = argv, .n_argv = 3 };
        struct started st = { 0 };
        struct vmm_error err = {};
        char in[128], out[128];
        struct vmm_vm *vm;
        int wfd;

        f->no_stdin_eof = !end_confirmed;
        snprintf(in, sizeof(in), "%s/in", f->dir);
        snprintf(out, sizeof(out), "%s/out", f->dir);
        assert_int_equal(mkfifo(in, 0600), 0);
        wfd = open(in, O_RDWR | O_CLOEXEC | O_NONBLOCK);
        assert_true(wfd >= 0);
        assert_int_equal(write(wfd, "hello\n", 6), 6);
        params.stdin_path = in;
        params.stdout_path = test_endpoint(f->ep, out);
        vm = add_vm_connected(f, true);
        assert_int_equal(vmm_exec(vm, &params, on_started, &st, &err), 0);
        run_until(f, &st.count, "the exec");
        if (st.error)
                fail_msg("exec failed: %s", st.message);
        wait_for_output(f, out, 6);
        *ret_pid = st.pid;
        *ret_wfd = wfd;
        return vm;
}

/* CloseStdin while a stop's flush (vmm_quiesce) drains the VM's streams: the VM is not frozen,
 * so the call is taken, and the stdin it ends still counts for the flush, which finishes. The
 * stream released at once never reported frozen: the stop waited out its flush, and what the
 * drain had read for the guest was lost. */
static void test_close_stdin_during_a_stops_flush_lets_it_finish(void **state)
{
        struct fixture *f = *state;
        uint64_t deadline = now_ns() + WAIT_NS;
        struct vmm_vm *vm;
        uint32_t pid;
        int wfd;

        vm = exec_on_a_fifo_stdin(f, "head -n 1; sleep 600", false, &pid, &wfd);
        assert_true(vmm_quiesce(f->a) >= 2);
        assert_int_equal(vmm_close_stdin(vm, pid), 0);
        while (vmm_quiesce_pending(f->a) > 0) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("the flush still waits for %u streams", vmm_quiesce_pending(f->a));
        }
        close(wfd);
}

/* CloseStdin's end is in the record: a daemon that crashes after it and a new one that recovers
 * the VM from the record do not listen for that stdin again (without the end confirmation the
 * guest never redials it, and a stdin fed again after CloseStdin would be wrong). The record kept
 * the stream open: the end set it done without telling the table. */
static void test_close_stdins_end_is_recorded_and_survives_a_crash(void **state)
{
        struct fixture *f = *state;
        uint64_t deadline = now_ns() + WAIT_NS;
        struct vmm_process_info info;
        struct vmm_vm *vm;
        uint32_t pid;
        int wfd;

        f->a = recording_vmm(f, f->a, f->state_a);
        vm = exec_on_a_fifo_stdin(f, "head -n 1; sleep 600", false, &pid, &wfd);
        vmm_process_get_info(vmm_process_find(vm, pid), &info);
        assert_true(port_listened(f, info.ports[VMM_STDIN]));
        assert_int_equal(vmm_close_stdin(vm, pid), 0);
        while (port_listened(f, info.ports[VMM_STDIN])) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("CloseStdin never ended the stdin");
        }
        /* The record is written on the loop's next pass, by its writer thread. */
        run_for(f, 100ull * 1000000ull);

        f->a = recording_vmm(f, f->a, f->state_a);
        assert_int_equal(vmm_recover(f->a), 0);
        vm = vmm_vm_find(f->a, "demo");
        assert_non_null(vm);
        assert_non_null(vmm_process_find(vm, pid));
        assert_true(port_listened(f, info.ports[VMM_STDOUT]));
        assert_false(port_listened(f, info.ports[VMM_STDIN]));
        close(wfd);
}

/* Writes into the fifo until the relay holds bytes it read from it that the stopped guest cannot
 * take: the fifo is full, and what left it did not all reach the guest. Returns how many bytes
 * went into the fifo, "hello\n" too. */
static uint64_t fill_until_held(struct fixture *f, struct vmm_vm *vm, uint32_t pid, int wfd)
{
        static const char chunk[4096];
        uint64_t deadline = now_ns() + WAIT_NS, written = 6, last_tx = UINT64_MAX;

        for (;;) {
                struct vmm_process_info info;
                ssize_t n, more = 0;
                int inq = 0;

                while ((n = write(wfd, chunk, sizeof(chunk))) > 0)
                        more += n;
                assert_int_equal(errno, EAGAIN);
                written += (uint64_t)more;
                assert_int_equal(ioctl(wfd, FIONREAD, &inq), 0);
                vmm_process_get_info(vmm_process_find(vm, pid), &info);
                if (more == 0 && info.bytes[VMM_STDIN] == last_tx && written - (uint64_t)inq > last_tx)
                        return written;
                last_tx = info.bytes[VMM_STDIN];
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("the relay holds nothing for the guest");
        }
}

/* CloseStdin on a stdin whose drain cannot end while the guest is stopped (SIGSTOP): what the
 * relay read from the fifo waits for the guest. The process prints how many bytes came after the
 * first line and exits 7 once its stdin ends. */
static struct vmm_vm *close_stdin_stuck_draining(struct fixture *f, bool end_confirmed, uint32_t *ret_pid, int *ret_wfd,
                                                 uint64_t *ret_written)
{
        struct vmm_vm *vm = exec_on_a_fifo_stdin(f, "head -n 1; wc -c; exit 7", end_confirmed, ret_pid, ret_wfd);
        uint64_t written;

        assert_int_equal(kill(f->sim, SIGSTOP), 0);
        written = fill_until_held(f, vm, *ret_pid, *ret_wfd);
        if (ret_written)
                *ret_written = written;
        assert_int_equal(vmm_close_stdin(vm, *ret_pid), 0);
        return vm;
}

/* What a save or a hand-over recorded for pid's stdin. */
static const Vsockmux__State__Stream *saved_stdin(const Vsockmux__State__Vm *vm, uint32_t pid)
{
        const Vsockmux__State__Stream *in = NULL;

        for (size_t i = 0; i < vm->n_processes; i++)
                for (size_t k = 0; vm->processes[i]->pid == pid && k < vm->processes[i]->n_streams; k++)
                        if (vm->processes[i]->streams[k]->kind == VSOCKMUX__STATE__STREAM_KIND__STREAM_KIND_STDIN)
                                in = vm->processes[i]->streams[k];
        assert_non_null(in);
        return in;
}

/* The process of close_stdin_stuck_draining() read every byte the relay took from the fifo (what
 * went in, less what is still there), once, after "hello\n", then saw its stdin end and exited. */
static void assert_stdin_read_once_and_ended(struct fixture *f, struct vmm_vm *vm, uint32_t pid, int wfd,
                                             uint64_t written, const char *out)
{
        _cleanup_free_ char *got = NULL;
        struct exited ex = { 0 };
        const char *count;
        size_t len;
        int inq = 0;

        wait_exit(f, vm, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 7);
        assert_int_equal(ioctl(wfd, FIONREAD, &inq), 0);
        got = slurp(f, out, &len);
        count = strncmp(got, "hello\n", 6) == 0 ? got + 6 : got;
        assert_int_equal(strtoull(count, NULL, 10), written - (uint64_t)inq - 6);
        close(wfd);
}

/* A save over CloseStdin's drain that waits for the stopped guest: it answers only once the guest
 * took the relay's bytes, and records the stdin ended with all it read delivered. */
static void save_over_a_stuck_close_stdin(struct fixture *f, struct vmm_vm *vm, uint32_t pid, struct saved *ret_sv)
{
        _cleanup_(savestate_msg_freep) savestate_msg *msg = NULL;
        const Vsockmux__State__Stream *in;
        struct saved sv = { 0 };
        struct vmm_error err = {};
        char e[128];

        assert_int_equal(vmm_save(vm, on_saved, &sv, &err), 0);
        for (int i = 0; i < 10; i++)
                assert_int_equal(relay_run_once(f->r, 0), 0);
        assert_int_equal(sv.count, 0);
        assert_int_equal(kill(f->sim, SIGCONT), 0);
        run_until(f, &sv.count, "the save");
        assert_int_equal(sv.error, 0);
        assert_int_equal(savestate_decode(sv.blob, sv.len, &msg, e, sizeof(e)), 0);
        in = saved_stdin(msg->vm, pid);
        assert_true(in->eof);
        assert_true(in->tx_guest > 6);
        assert_int_equal(in->tx_guest, in->rx_endpoint);
        *ret_sv = sv;
}

/* CloseStdin's own freeze still drains the stdin (a fifo: what it read waits for the guest, which
 * reads nothing while stopped) when a save starts: the save takes that freeze over, answers once
 * the drain is done, and records the stdin ended with all it read delivered. It left the stream
 * out: the save answered at once with the counts of a stream mid-drain, still open, so the
 * restored daemon would have fed the stdin CloseStdin had ended. */
static void test_close_stdins_drain_in_flight_at_a_save_is_waited_for_and_counted(void **state)
{
        struct fixture *f = *state;
        struct saved sv = { 0 };
        struct vmm_vm *vm;
        uint32_t pid;
        int wfd;

        vm = close_stdin_stuck_draining(f, false, &pid, &wfd, NULL);
        save_over_a_stuck_close_stdin(f, vm, pid, &sv);
        close(wfd);
        free(sv.blob);
}

/* With the end confirmation CloseStdin half-closes the stdin once the relay's bytes reached the
 * guest, and a VM's freeze (a save, a hold) that comes while they wait for the stopped guest takes
 * the stream with its end still to come: the guest saw neither the half-close nor could confirm.
 * A save over such an end answers once the drain is done, and records the stdin ended with all it
 * read delivered; the destination listens for the guest, which takes the source's close for a
 * host gone away and redials, and gives it the end. */
static void test_close_stdins_end_in_flight_at_a_save_reaches_the_process_after_restore(void **state)
{
        struct fixture *f = *state;
        struct saved sv = { 0 };
        struct vmm_vm *vm, *vb;
        char out_b[128];
        uint64_t written;
        uint32_t pid;
        int wfd;

        vm = close_stdin_stuck_draining(f, true, &pid, &wfd, &written);
        save_over_a_stuck_close_stdin(f, vm, pid, &sv);
        snprintf(out_b, sizeof(out_b), "%s/out-b", f->dir);
        vb = restore_vm(f, &sv, pid, out_b);
        assert_stdin_read_once_and_ended(f, vb, pid, wfd, written, out_b);
        free(sv.blob);
}

/* The same save rolled back (vmm_resume on the source): the source listens for the guest's redial
 * again, for the ended stdin too. It skipped every ended stream, and the guest redialled a port
 * nobody listened on: its stdin never ended. */
static void test_close_stdins_end_in_flight_at_a_save_rolled_back_reaches_the_process(void **state)
{
        struct fixture *f = *state;
        char out[128];
        struct saved sv = { 0 };
        struct vmm_error err = {};
        struct vmm_vm *vm;
        uint64_t written;
        uint32_t pid;
        int wfd;

        vm = close_stdin_stuck_draining(f, true, &pid, &wfd, &written);
        assert_int_equal(vmm_save(vm, on_saved, &sv, &err), 0);
        assert_int_equal(kill(f->sim, SIGCONT), 0);
        run_until(f, &sv.count, "the save");
        assert_int_equal(sv.error, 0);
        assert_int_equal(vmm_resume(vm, &err), 0);
        snprintf(out, sizeof(out), "%s/out", f->dir);
        assert_stdin_read_once_and_ended(f, vm, pid, wfd, written, out);
        free(sv.blob);
}

/* With the end confirmation: a hold taken over CloseStdin's end still held for the stopped guest,
 * then the guest let go, until the hold is done. */
static struct vmm_vm *hold_over_a_stuck_close_stdin(struct fixture *f, uint32_t *ret_pid, int *ret_wfd,
                                                    uint64_t *ret_written)
{
        struct vmm_error err = {};
        struct vmm_vm *vm;
        int held = 0;

        vm = close_stdin_stuck_draining(f, true, ret_pid, ret_wfd, ret_written);
        assert_int_equal(vmm_vm_hold(vm, &hold_ops, &held, &err), 0);
        assert_int_equal(kill(f->sim, SIGCONT), 0);
        run_until(f, &held, "the hold");
        return vm;
}

/* A hold over such an end, held (the drain done) and given up: the thaw half-closes the stdin and
 * the process sees its end. The hold's freeze released the stream: the guest took the close for a
 * host gone away and redialled a port nobody listened on any more. */
static void test_close_stdins_end_in_flight_at_a_hold_given_up_reaches_the_process(void **state)
{
        struct fixture *f = *state;
        struct vmm_vm *vm;
        uint64_t written;
        char out[128];
        uint32_t pid;
        int wfd;

        vm = hold_over_a_stuck_close_stdin(f, &pid, &wfd, &written);
        vmm_vm_unhold(vm);
        snprintf(out, sizeof(out), "%s/out", f->dir);
        assert_stdin_read_once_and_ended(f, vm, pid, wfd, written, out);
}

/* The same hold handed over: the new daemon takes the stdin's connection and half-closes it. The
 * freeze had released it, and the new daemon got neither the connection nor the listener. */
static void test_close_stdins_end_in_flight_at_a_hold_reaches_the_process_after_a_hand_over(void **state)
{
        struct fixture *f = *state;
        struct vmm_fds fds = { 0 };
        struct vmm_error err = {};
        struct vmm_vm *vm, *vb = NULL;
        Vsockmux__State__Vm *in;
        uint64_t written;
        char out[128];
        uint32_t pid;
        int wfd;

        vm = hold_over_a_stuck_close_stdin(f, &pid, &wfd, &written);
        in = hand_over_held(vm, &fds);
        assert_true(saved_stdin(in, pid)->eof);
        assert_int_equal(saved_stdin(in, pid)->tx_guest, saved_stdin(in, pid)->rx_endpoint);
        f->a = vmm_free(f->a);
        if (vmm_adopt(f->b, in, fds.fds, fds.n, &vb, &err) < 0)
                fail_msg("adopt: %s", err.message);
        vsockmux__state__vm__free_unpacked(in, NULL);
        free(fds.fds);
        snprintf(out, sizeof(out), "%s/out", f->dir);
        assert_stdin_read_once_and_ended(f, vb, pid, wfd, written, out);
}

/* A hold taken over CloseStdin's drain and given up before it ended (vmm_vm_unhold) leaves the
 * stdin to that drain: the process still sees its stdin end and exits. The thaw resumed it, and
 * the relay read the fifo on as if CloseStdin had never come. */
static void test_hold_given_up_during_close_stdins_drain_still_ends_the_stdin(void **state)
{
        struct fixture *f = *state;
        struct vmm_error err = {};
        struct exited ex = { 0 };
        struct vmm_vm *vm;
        uint32_t pid;
        int wfd, held = 0;

        vm = close_stdin_stuck_draining(f, false, &pid, &wfd, NULL);
        assert_int_equal(vmm_vm_hold(vm, &hold_ops, &held, &err), 0);
        vmm_vm_unhold(vm);
        assert_int_equal(held, 0);
        assert_int_equal(kill(f->sim, SIGCONT), 0);
        wait_exit(f, vm, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 7);
        close(wfd);
}

/* CloseStdin while a save freezes the VM is refused (FAILED_PRECONDITION in control.proto), for
 * a stdin fed by attach clients too: it stays open, and the save answers. Taken, its close would
 * have stayed with the source while the VM went on elsewhere. */
static void test_close_stdin_during_a_save_is_refused_and_the_save_answers(void **state)
{
        struct fixture *f = *state;
        const char *argv[] = { "sh", "-c", "sleep 600" };
        struct vmm_exec_params params = { .argv = argv, .n_argv = 3, .interactive = true };
        struct vmm_process_info info;
        struct started st = { 0 };
        struct saved sv = { 0 };
        struct vmm_error err = {};
        struct vmm_vm *vm;

        vm = add_vm_connected(f, true);
        assert_int_equal(vmm_exec(vm, &params, on_started, &st, &err), 0);
        run_until(f, &st.count, "the exec");
        if (st.error)
                fail_msg("exec failed: %s", st.message);
        vmm_process_get_info(vmm_process_find(vm, st.pid), &info);
        assert_true(info.attach_stdin);
        assert_int_equal(vmm_save(vm, on_saved, &sv, &err), 0);
        assert_int_equal(vmm_close_stdin(vm, st.pid), -EBUSY);
        run_until(f, &sv.count, "the save");
        assert_int_equal(sv.error, 0);
        assert_int_equal(vmm_resume(vm, &err), 0);
        vmm_process_get_info(vmm_process_find(vm, st.pid), &info);
        assert_true(info.attach_stdin);
        free(sv.blob);
}

static void test_live_handover_unheld_serves_on(void **state)
{
        struct fixture *f = *state;
        struct vmm_error err = {};
        struct exited ex = { 0 };
        _cleanup_free_ char *all = NULL;
        struct vmm_vm *vm;
        char out_a[128];
        uint32_t pid;
        size_t len;
        int held = 0;

        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        vm = add_vm_connected(f, true);
        pid = exec_ok(f, vm, writer, out_a);
        wait_for_output(f, out_a, 1000);
        assert_int_equal(vmm_vm_hold(vm, &hold_ops, &held, &err), 0);
        run_until(f, &held, "the hold");
        vmm_vm_unhold(vm);
        wait_exit(f, vm, pid, &ex);
        assert_int_equal(ex.exit.code, 7);
        all = slurp(f, out_a, &len);
        assert_lines_exact(all, len, WRITER_LINES);
        assert_int_equal(sim_stat(f, "bridge_connects"), 1);
        assert_int_equal(sim_stat(f, "stdio_redials"), 0);
}

static void test_new_exec_after_restore_never_reuses_a_port(void **state)
{
        struct fixture *f = *state;
        char out_a[128], out_n[128], exec_id[128];
        struct vmm_process_info before, after;
        struct vmm_vm *vm, *vb;
        struct exited ex = { 0 };
        struct saved sv;
        uint32_t pid, pid2;

        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        snprintf(out_n, sizeof(out_n), "%s/out-new", f->dir);
        vm = add_vm_connected(f, true);
        pid = exec_ok(f, vm, "echo up; sleep 2", out_a);
        wait_for_output(f, out_a, 3);
        vmm_process_get_info(vmm_process_find(vm, pid), &before);
        snprintf(exec_id, sizeof(exec_id), "%s", before.exec_id);
        sv = save_vm(f, vm);
        vb = restore_vm(f, &sv, pid, NULL);
        /* The exec id travels with the process: a client's retry still finds it. */
        assert_ptr_equal(vmm_process_find_id(vb, exec_id), vmm_process_find(vb, pid));
        /* The guest's bridge must be back before a new exec can go out. */
        run_until_bridge(f, vb, true, "the guest to come back");
        pid2 = exec_ok(f, vb, "echo new; exit 0", out_n);
        vmm_process_get_info(vmm_process_find(vb, pid2), &after);
        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                if (after.ports[k] == 0)
                        continue;
                assert_true(after.ports[k] >= PORTS_FIRST);
                for (int j = 0; j < _VMM_STREAM_KIND_MAX; j++)
                        assert_int_not_equal(after.ports[k], before.ports[j]);
                assert_true(after.ports[k] > before.ports[VMM_STDERR]);
        }
        wait_exit(f, vb, pid2, &ex);
        assert_int_equal(ex.exit.code, 0);
        free(sv.blob);
}

/* ps's times are the source's: when the guest gave the pid and when the exit became known, not
 * when the destination read the state. */
static void test_start_and_exit_times_survive_save_and_restore(void **state)
{
        struct fixture *f = *state;
        char out_a[128], out_b[128];
        struct vmm_process_info done_before, done_after, run_before, run_after;
        struct vmm_vm *vm, *vb;
        struct exited ex = { 0 }, ex_run = { 0 };
        struct saved sv;
        uint32_t done, run;

        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        snprintf(out_b, sizeof(out_b), "%s/out-b", f->dir);
        vm = add_vm_connected(f, true);
        done = exec_ok(f, vm, "exit 3", NULL);
        wait_exit(f, vm, done, &ex);
        run = exec_ok(f, vm, "echo up; sleep 2", out_a);
        wait_for_output(f, out_a, 3);
        vmm_process_get_info(vmm_process_find(vm, done), &done_before);
        vmm_process_get_info(vmm_process_find(vm, run), &run_before);
        assert_true(done_before.started_ns != 0 && done_before.exited_ns >= done_before.started_ns);
        assert_true(run_before.started_ns >= done_before.started_ns && run_before.exited_ns == 0);
        sv = save_vm(f, vm);
        vb = restore_vm(f, &sv, run, out_b);
        vmm_process_get_info(vmm_process_find(vb, done), &done_after);
        vmm_process_get_info(vmm_process_find(vb, run), &run_after);
        assert_true(done_after.exit_known);
        assert_int_equal(done_after.started_ns, done_before.started_ns);
        assert_int_equal(done_after.exited_ns, done_before.exited_ns);
        assert_int_equal(run_after.started_ns, run_before.started_ns);
        assert_int_equal(run_after.exited_ns, 0);
        wait_exit(f, vb, run, &ex_run);
        assert_int_equal(ex_run.exit.kind, VMM_EXIT_EXITED);
        vmm_process_get_info(vmm_process_find(vb, run), &run_after);
        assert_true(run_after.exited_ns >= run_before.started_ns);
        free(sv.blob);
}

static void on_resized(int error, const char *message, void *userdata)
{
        int *ret = userdata;

        *ret = error == 0 ? 1 : error;
}

static size_t count_of(const char *hay, const char *needle)
{
        size_t n = 0;

        for (const char *at = strstr(hay, needle); at; at = strstr(at + 1, needle))
                n++;
        return n;
}

/* A terminal process keeps its console (Resize still applies) and its k8s-file log keeps being
 * written at its path on the destination, with nothing lost or doubled. */
static void test_terminal_and_k8s_log_survive_save_and_restore(void **state)
{
        struct fixture *f = *state;
        char log[128], go[128], script[384];
        const char *argv[] = { "sh", "-c", script };
        struct vmm_exec_params params = {
                .argv = argv,
                .n_argv = 3,
                .log_k8s_path = log,
                .terminal = true,
                .console_height = 24,
                .console_width = 80,
        };
        struct vmm_process_info info;
        struct started st = { 0 };
        struct exited ex = { 0 };
        struct vmm_vm *vm, *vb;
        struct saved sv;
        struct vmm_error err = {};
        char *text;
        size_t len;
        int resized = 0;

        snprintf(log, sizeof(log), "%s/c.log", f->dir);
        snprintf(go, sizeof(go), "%s/go", f->dir);
        snprintf(script, sizeof(script), "echo before; while [ ! -e %s ]; do sleep 0.05; done; echo after", go);
        vm = add_vm_connected(f, true);
        assert_int_equal(vmm_exec(vm, &params, on_started, &st, &err), 0);
        run_until(f, &st.count, "the exec");
        assert_int_equal(st.error, 0);
        wait_for_output(f, log, 1);
        for (uint64_t deadline = now_ns() + WAIT_NS; !strstr(text = slurp(f, log, &len), "before"); free(text)) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("'before' never reached the log");
        }
        free(text);
        sv = save_vm(f, vm);
        vb = restore_vm(f, &sv, st.pid, NULL);
        vmm_process_get_info(vmm_process_find(vb, st.pid), &info);
        assert_true(info.terminal);
        /* ResizeConsole goes over the guest's bridge: once it is back. */
        run_until_bridge(f, vb, true, "the guest to come back");
        assert_int_equal(vmm_resize(vb, st.pid, 30, 100, on_resized, &resized), 0);
        /* The process must outlive the resize: a console that is gone cannot be resized. */
        run_until(f, &resized, "the resize");
        assert_int_equal(resized, 1);
        assert_int_equal(fclose(fopen(go, "w")), 0);
        wait_exit(f, vb, st.pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 0);
        text = slurp(f, log, &len);
        /* CRI records of the console's output: each line once, the one before the move included. */
        assert_int_equal(count_of(text, " stdout F before"), 1);
        assert_int_equal(count_of(text, " stdout F after"), 1);
        free(text);
        free(sv.blob);
}

/* A k8s-file log's cap and file count go with a save: the destination reopens it at its path and
 * rotates it as the source did (no file over the cap, the file count kept), not unbounded. */
static void test_k8s_log_keeps_its_cap_through_save_and_restore(void **state)
{
        struct fixture *f = *state;
        char log[128], go[128], name[160], script[384];
        const char *argv[] = { "sh", "-c", script };
        struct vmm_exec_params params = {
                .argv = argv,
                .n_argv = 3,
                .log_k8s_path = log,
                .log_size_max = 1024,
                .log_max_files = 3,
        };
        struct started st = { 0 };
        struct exited ex = { 0 };
        struct vmm_vm *vm, *vb;
        struct saved sv;
        struct vmm_error err = {};

        snprintf(log, sizeof(log), "%s/c.log", f->dir);
        snprintf(go, sizeof(go), "%s/go", f->dir);
        /* Some 50 bytes a record: five files' worth after the move. */
        snprintf(script, sizeof(script),
                 "echo before; while [ ! -e %s ]; do sleep 0.05; done; i=0; while [ $i -lt 100 ]; do echo line $i; "
                 "i=$((i+1)); done",
                 go);
        vm = add_vm_connected(f, true);
        assert_int_equal(vmm_exec(vm, &params, on_started, &st, &err), 0);
        run_until(f, &st.count, "the exec");
        assert_int_equal(st.error, 0);
        wait_for_output(f, log, 1);
        sv = save_vm(f, vm);
        vb = restore_vm(f, &sv, st.pid, NULL);
        assert_int_equal(fclose(fopen(go, "w")), 0);
        wait_exit(f, vb, st.pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        for (int i = 0; i < 3; i++) {
                if (i == 0)
                        snprintf(name, sizeof(name), "%s", log);
                else
                        snprintf(name, sizeof(name), "%s.%d", log, i);
                if (access(name, F_OK) < 0)
                        fail_msg("%s is missing: the log did not rotate after the restore", name);
                if (file_size(name) > 1024)
                        fail_msg("%s holds %zu bytes, over its cap 1024", name, file_size(name));
        }
        snprintf(name, sizeof(name), "%s.3", log);
        assert_int_equal(access(name, F_OK), -1);
        free(sv.blob);
}

/* A process logging to journald keeps it through a save (the destination's own output flag), unless
 * the restoring client names its stdout: that endpoint then takes the output, as it takes a
 * k8s-file log's. Nothing is written before the move, so no test entry reaches a real journal. */
static void test_restore_io_stdout_takes_a_journald_process_output(void **state)
{
        struct fixture *f = *state;
        char out[128], go[128], script[256];
        const char *argv[] = { "sh", "-c", script };
        struct vmm_exec_params params = { .argv = argv, .n_argv = 3, .log_journald = true };
        struct started st = { 0 };
        struct exited ex = { 0 };
        struct vmm_vm *vm, *vb;
        struct saved sv;
        struct vmm_error err = {};
        char *text;
        size_t len;

        snprintf(out, sizeof(out), "%s/out", f->dir);
        snprintf(go, sizeof(go), "%s/go", f->dir);
        snprintf(script, sizeof(script), "while [ ! -e %s ]; do sleep 0.05; done; echo after", go);
        vm = add_vm_connected(f, true);
        assert_int_equal(vmm_exec(vm, &params, on_started, &st, &err), 0);
        run_until(f, &st.count, "the exec");
        assert_int_equal(st.error, 0);
        sv = save_vm(f, vm);
        vb = restore_vm(f, &sv, st.pid, out);
        assert_int_equal(fclose(fopen(go, "w")), 0);
        wait_exit(f, vb, st.pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        text = slurp(f, out, &len);
        assert_string_equal(text, "after\n");
        free(text);
        free(sv.blob);
}

static void test_resume_on_the_source_rolls_back_a_save(void **state)
{
        struct fixture *f = *state;
        char out_a[128];
        struct vmm_vm *vm;
        struct exited ex = { 0 };
        struct saved sv;
        struct vmm_error err = {};
        size_t la;
        uint32_t pid;

        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        vm = add_vm_connected(f, true);
        pid = exec_ok(f, vm, writer, out_a);
        wait_for_output(f, out_a, 1000);
        sv = save_vm(f, vm);
        run_for(f, 200ull * 1000000ull);
        assert_int_equal(vmm_resume(vm, &err), 0);
        assert_false(vmm_vm_is_saved(vm));
        wait_exit(f, vm, pid, &ex);
        assert_int_equal(ex.exit.code, 7);
        {
                _cleanup_free_ char *a = slurp(f, out_a, &la);

                assert_lines_exact(a, la, WRITER_LINES);
        }
        test_endpoints_assert_spliced(f->ep, f->r);
        free(sv.blob);
}

static void test_restore_refuses_endpoints_that_do_not_match_before_listening(void **state)
{
        struct fixture *f = *state;
        char out_a[128], path[160], exec_id[EXEC_ID_MAX + 1], want[EXEC_ID_MAX + 64];
        struct vmm_restore_io io = { 0 }, two[2];
        struct vmm_process_info pi;
        struct vmm_vm *vm, *vb = NULL;
        struct saved sv;
        struct vmm_error err = {};
        uint32_t pid;

        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        vm = add_vm_connected(f, true);
        pid = exec_ok(f, vm, "echo up; sleep 2", out_a);
        wait_for_output(f, out_a, 3);
        sv = save_vm(f, vm);

        /* stdin was never a stream of this process. */
        io.pid = pid;
        io.path[VMM_STDIN] = out_a;
        assert_int_equal(vmm_restore(f->b, sv.blob, sv.len, NULL, NULL, &io, 1, &vb, &err), -EINVAL);
        assert_non_null(strstr(err.message, "no stdin stream"));
        /* A pid the state does not hold. */
        io.pid = pid + 100000;
        io.path[VMM_STDIN] = NULL;
        assert_int_equal(vmm_restore(f->b, sv.blob, sv.len, NULL, NULL, &io, 1, &vb, &err), -ENOENT);
        /* The same pid twice, and the same exec id twice; a pid beside its own exec id is not a
         * repeat (each names the process its own way). */
        vmm_process_get_info(vmm_process_find(vm, pid), &pi);
        snprintf(exec_id, sizeof(exec_id), "%s", pi.exec_id);
        two[0] = (struct vmm_restore_io){ .pid = pid };
        two[1] = (struct vmm_restore_io){ .pid = pid };
        assert_int_equal(vmm_restore(f->b, sv.blob, sv.len, NULL, NULL, two, 2, &vb, &err), -EINVAL);
        snprintf(want, sizeof(want), "--io names pid %u twice", pid);
        assert_string_equal(err.message, want);
        two[0] = (struct vmm_restore_io){ .exec_id = exec_id };
        two[1] = (struct vmm_restore_io){ .exec_id = exec_id };
        assert_int_equal(vmm_restore(f->b, sv.blob, sv.len, NULL, NULL, two, 2, &vb, &err), -EINVAL);
        snprintf(want, sizeof(want), "--io names exec %s twice", exec_id);
        assert_string_equal(err.message, want);
        /* Checked in order: the pid the state lacks, ahead of the repeat after it. */
        two[1] = (struct vmm_restore_io){ .pid = pid + 100000 };
        assert_int_equal(vmm_restore(f->b, sv.blob, sv.len, NULL, NULL, two, 2, &vb, &err), -ENOENT);
        two[0] = (struct vmm_restore_io){ .pid = pid, .path[VMM_STDIN] = out_a };
        two[1] = (struct vmm_restore_io){ .exec_id = exec_id, .path[VMM_STDIN] = out_a };
        assert_int_equal(vmm_restore(f->b, sv.blob, sv.len, NULL, NULL, two, 2, &vb, &err), -EINVAL);
        assert_non_null(strstr(err.message, "pid "));
        assert_non_null(strstr(err.message, "no stdin stream"));
        /* Nothing listens: neither the bridge nor any stdio port. */
        assert_null(vmm_vm_find(f->b, "demo"));
        snprintf(path, sizeof(path), "%s_%u", f->transport.uds_path, PORTS_BRIDGE);
        assert_int_equal(access(path, F_OK), -1);
        /* A corrupted blob is refused by name, and the daemon carries on. */
        sv.blob[sv.len / 2] ^= 0xff;
        assert_int_equal(vmm_restore(f->b, sv.blob, sv.len, NULL, NULL, NULL, 0, &vb, &err), -EBADMSG);
        assert_non_null(strstr(err.message, "checksum"));
        assert_int_equal(vmm_vm_count(f->b), 0);
        free(sv.blob);
}

/* Enough processes that a per-process cost would show: the whole path holds for a VM this busy. */
#define SCALE_PROCESSES 1000

static void test_thousand_processes_survive_save_and_restore(void **state)
{
        struct fixture *f = *state;
        char script[256], fifo[128];
        /* Every process blocks on a fifo until the test opens and closes it after the restore. */
        const char *argv[] = { "sh", "-c", script };
        struct vmm_exec_params params = { .argv = argv, .n_argv = 3 };
        _cleanup_free_ struct started *st = calloc(SCALE_PROCESSES, sizeof(*st));
        _cleanup_free_ struct exited *ex = calloc(SCALE_PROCESSES, sizeof(*ex));
        struct vmm_error err = {};
        struct vmm_vm *vm, *vb;
        struct saved sv;
        int started = 0, exited = 0;
        _cleanup_close_ int gate = -1;

        assert_non_null(st);
        assert_non_null(ex);
        snprintf(fifo, sizeof(fifo), "%s/go", f->dir);
        assert_int_equal(mkfifo(fifo, 0600), 0);
        /* Held open read-write for the whole test: opening and closing it once would leave any
         * process whose `read` opened the fifo only afterwards blocked for ever. */
        gate = open(fifo, O_RDWR | O_CLOEXEC);
        assert_true(gate >= 0);
        snprintf(script, sizeof(script), "echo up; read x < %s; exit 3", fifo);
        vm = add_vm_connected(f, true);
        for (int i = 0; i < SCALE_PROCESSES; i++)
                assert_int_equal(vmm_exec(vm, &params, on_started, &st[i], &err), 0);
        {
                uint64_t deadline = now_ns() + WAIT_NS;

                while (started < SCALE_PROCESSES) {
                        assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                        started = 0;
                        for (int i = 0; i < SCALE_PROCESSES; i++) {
                                if (st[i].count && st[i].error)
                                        fail_msg("exec %d failed: %s", i, st[i].message);
                                started += st[i].count;
                        }
                        if (now_ns() > deadline)
                                fail_msg("only %d of %d processes started", started, SCALE_PROCESSES);
                }
        }
        sv = save_vm(f, vm);
        assert_true(sv.len < SCALE_PROCESSES * 1024u);
        run_for(f, 200ull * 1000000ull);
        vb = restore_vm(f, &sv, 0, NULL);
        assert_int_equal(vmm_vm_process_count(vb), SCALE_PROCESSES);
        for (int i = 0; i < SCALE_PROCESSES; i++) {
                struct vmm_process *p = vmm_process_find(vb, st[i].pid);
                struct vmm_waiter *w;
                int r;

                assert_non_null(p);
                r = vmm_process_wait(p, on_exit_seen, &ex[i], &w, &ex[i].exit);
                assert_true(r >= 0);
                if (r == 1)
                        ex[i].count = 1;
        }
        {
                /* One line per process: sh reads a fifo byte by byte, so each takes exactly one,
                 * however late its `read` opens the fifo (the gate stays open until the end). */
                char lines[SCALE_PROCESSES];

                memset(lines, '\n', sizeof(lines));
                assert_int_equal(write(gate, lines, sizeof(lines)), (ssize_t)sizeof(lines));
        }
        {
                uint64_t deadline = now_ns() + WAIT_NS;

                while (exited < SCALE_PROCESSES) {
                        assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                        exited = 0;
                        for (int i = 0; i < SCALE_PROCESSES; i++)
                                exited += ex[i].count;
                        if (now_ns() > deadline)
                                fail_msg("only %d of %d exits delivered", exited, SCALE_PROCESSES);
                }
        }
        {
                int lost = 0;

                /* Never a wrong code and never a lost exit: every process exits only after the
                 * restore, so every answer goes to the destination. The two causes of losses once
                 * seen are fixed (relay: a released bridge socket is shut down at once, so the
                 * guest's write fails and it keeps the answer for its next connection instead of
                 * writing it into a socket nobody reads; sim: exit answers are queued before the
                 * process leaves the table, so a probe's "not found" cannot overtake them). */
                for (int i = 0; i < SCALE_PROCESSES; i++) {
                        if (ex[i].exit.kind == VMM_EXIT_LOST)
                                lost++;
                        else {
                                assert_int_equal(ex[i].exit.kind, VMM_EXIT_EXITED);
                                assert_int_equal(ex[i].exit.code, 3);
                        }
                }
                if (lost > 0)
                        fail_msg("%d of %d exits lost across the restore", lost, SCALE_PROCESSES);
        }
        free(sv.blob);
}

/* The caller gave up (its deadline passed) after ExecuteProcess went out: the process runs on, its
 * exec id finds it, and the starter that left is never called. Cancelling is done here by hand, at
 * a known point, instead of racing a real deadline against the guest's reply. */
static void test_exec_cancelled_after_it_reached_the_guest_runs_once_and_keeps_its_id(void **state)
{
        struct fixture *f = *state;
        const char *argv[] = { "sh", "-c", "echo ran; exit 6" };
        char out[128];
        struct vmm_error err = {};
        struct vmm_exec_params params = { .argv = argv, .n_argv = 3, .exec_id = "sent-1" };
        struct vmm_starter *starter = NULL;
        struct started st = { 0 };
        struct exited ex = { 0 };
        struct vmm_process *p;
        struct vmm_vm *vm;

        snprintf(out, sizeof(out), "%s/out-sent", f->dir);
        params.stdout_path = test_endpoint(f->ep, out);
        vm = add_vm_connected(f, true);
        assert_int_equal(vmm_exec_start(vm, &params, on_started, &st, &starter, &err), 0);
        assert_non_null(starter);
        vmm_starter_cancel(starter);
        p = vmm_process_find_id(vm, "sent-1");
        assert_non_null(p);
        /* The same id again is refused by vmm_exec_start: the service looks it up first. */
        assert_int_equal(vmm_exec_start(vm, &params, on_started, &st, NULL, &err), -EEXIST);
        wait_for_output(f, out, 4);
        for (uint64_t deadline = now_ns() + WAIT_NS; vmm_process_pid(p) == 0;) {
                assert_true(now_ns() < deadline);
                run_for(f, STEP_NS);
        }
        wait_exit(f, vm, vmm_process_pid(p), &ex);
        assert_int_equal(ex.exit.code, 6);
        assert_int_equal(st.count, 0);
        assert_ptr_equal(vmm_process_find_id(vm, "sent-1"), p);
        assert_int_equal(vmm_process_delete(p), 0);
        assert_null(vmm_process_find_id(vm, "sent-1"));
}

/* The guest's bridge is not there: cancelling the only starter drops the exec before it is sent. */
static void test_exec_cancelled_before_it_reached_the_guest_is_gone(void **state)
{
        struct fixture *f = *state;
        const char *argv[] = { "sh", "-c", "exit 0" };
        struct vmm_exec_params params = { .argv = argv, .n_argv = 3, .exec_id = "queued-1" };
        struct vmm_starter *starter = NULL;
        struct started st = { 0 };
        struct vmm_vm *vm;
        struct vmm_error err = {};

        assert_int_equal(vmm_vm_add(f->a, "demo", &f->transport, &vm), 0);
        assert_int_equal(vmm_exec_start(vm, &params, on_started, &st, &starter, &err), 0);
        assert_non_null(vmm_process_find_id(vm, "queued-1"));
        vmm_starter_cancel(starter);
        assert_null(vmm_process_find_id(vm, "queued-1"));
        assert_int_equal(vmm_vm_process_count(vm), 0);
        assert_int_equal(st.count, 0);
}

/* ---- the counts kept as the processes change ---- */

/* The streams held (for the exec caps) and the execs waiting for the record are counts kept where
 * they change, not walks: after each step they must equal the same counted by walking. */
static void assert_counts(struct vmm_vm *vm, const char *when)
{
        if (vmm_vm_check_counts(vm) < 0)
                fail_msg("the kept counts differ from a walk %s (%u streams held)", when, vmm_vm_streams_held(vm));
}

static void exec_churn(struct fixture *f, struct vmm_vm *vm, const char *tag, int n)
{
        for (int i = 0; i < n; i++) {
                char out[128], in[128], script[64];
                const char *argv[] = { "sh", "-c", script };
                struct vmm_exec_params params = { .argv = argv, .n_argv = 3 };
                struct started st = { 0 };
                struct vmm_error err = {};

                snprintf(out, sizeof(out), "%s/%s-out-%d", f->dir, tag, i);
                snprintf(in, sizeof(in), "%s/%s-in-%d", f->dir, tag, i);
                /* Odd ones exit at once (some with stdin and stderr), even ones run on. */
                snprintf(script, sizeof(script), i % 2 ? "cat; exit %d" : "sleep 600", i);
                params.stdout_path = test_endpoint(f->ep, out);
                if (i % 4 == 1) {
                        close(open(in, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
                        params.stdin_path = in;
                        params.keep_stderr = true;
                }
                assert_int_equal(vmm_exec(vm, &params, on_started, &st, &err), 0);
                assert_counts(vm, "with an exec outstanding");
                run_until(f, &st.count, "the exec");
                assert_int_equal(st.error, 0);
                assert_counts(vm, "after an exec");
        }
}

static void run_counting(struct fixture *f, struct vmm_vm *vm, uint64_t ns, const char *when)
{
        uint64_t end = now_ns() + ns;

        while (now_ns() < end) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                assert_counts(vm, when);
        }
}

static void test_kept_counts_follow_a_churn_of_execs_exits_forgets_save_restore_and_recovery(void **state)
{
        struct fixture *f = *state;
        struct vmm_config cfg;
        struct vmm_vm *vm;
        struct saved sv;

        /* Few exits kept: the churn forgets processes too. Both daemons keep a record. */
        vmm_free(f->a);
        vmm_free(f->b);
        vmm_config_default(&cfg);
        cfg.record = true;
        cfg.exited_keep = 2;
        cfg.state_dir = f->state_a;
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &f->a), 0);
        cfg.state_dir = f->state_b;
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &f->b), 0);
        vm = add_vm_connected(f, true);
        assert_counts(vm, "with no process");
        exec_churn(f, vm, "a", 12);
        run_counting(f, vm, 500ull * 1000000ull, "while processes exit and are forgotten");
        assert_true(vmm_vm_process_count(vm) < 12);

        sv = save_vm(f, vm);
        assert_counts(vm, "after the save");
        vm = restore_vm(f, &sv, 0, NULL);
        free(sv.blob);
        assert_counts(vm, "after the restore");
        assert_int_equal(vmm_vm_remove(f->a, "demo"), 0);
        run_counting(f, vm, 500ull * 1000000ull, "while the guest redials");
        exec_churn(f, vm, "b", 6);
        run_counting(f, vm, 300ull * 1000000ull, "after the restore's execs");

        /* A recorded stop, then a new daemon recovers the VM from the record. */
        vmm_stop_recorded(f->b, "test stop");
        vmm_free(f->b);
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &f->b), 0);
        assert_int_equal(vmm_recover(f->b), 0);
        vm = vmm_vm_find(f->b, "demo");
        assert_non_null(vm);
        assert_counts(vm, "after the recovery");
        run_counting(f, vm, 500ull * 1000000ull, "while the guest redials after the recovery");
        exec_churn(f, vm, "c", 4);
        assert_counts(vm, "after the recovery's execs");
}

static void test_hvsock_paths_outside_the_root_are_refused(void **state)
{
        struct fixture *f = *state;
        struct vmm_config cfg;
        struct vmm *m = NULL;
        struct relay_transport t = { .kind = RELAY_TRANSPORT_HVSOCK };
        char root[PATH_MAX], state_dir[128];

        assert_non_null(realpath(f->dir, root));
        snprintf(state_dir, sizeof(state_dir), "%s/c", f->dir);
        vmm_config_default(&cfg);
        cfg.state_dir = state_dir;
        cfg.hvsock_root = root;
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &m), 0);
        snprintf(t.uds_path, sizeof(t.uds_path), "/tmp/elsewhere.vsock");
        assert_int_equal(vmm_vm_add(m, "out", &t, NULL), -EPERM);
        assert_true(strlen(root) + 16 < sizeof(t.uds_path));
        strcpy(t.uds_path, root);
        strcat(t.uds_path, "/../x.vsock");
        assert_int_equal(vmm_vm_add(m, "dots", &t, NULL), -EPERM);
        assert_int_equal(vmm_vm_count(m), 0);
        strcpy(t.uds_path, root);
        strcat(t.uds_path, "/in.vsock");
        assert_int_equal(vmm_vm_add(m, "in", &t, NULL), 0);
        assert_int_equal(vmm_vm_count(m), 1);
        vmm_free(m);
}

/* ---- the record while a VM's changes keep coming (daemon/record.c) ---- */

/* Daemon a again, keeping a record, with gap_ns between the writes of a burst. */
static void restart_a_recording(struct fixture *f, uint64_t gap_ns)
{
        struct vmm_config cfg;

        vmm_free(f->a);
        vmm_config_default(&cfg);
        cfg.state_dir = f->state_a;
        cfg.record = true;
        cfg.record_burst_gap_ns = gap_ns;
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &f->a), 0);
}

/* Process pid as a restart would read daemon a's record of VM demo: snapshot, then journal. */
static Vsockmux__State__ProcessState recorded_state(struct fixture *f, uint32_t pid)
{
        _cleanup_(savestate_msg_freep) savestate_msg *s = NULL;
        char path[192], why[256];
        struct journal_replay jr;
        uint8_t *buf;
        size_t len;

        snprintf(path, sizeof(path), "%s/%s/demo.state", f->state_a, VMM_RECORD_DIR);
        assert_int_equal(savestate_read_file(path, &buf, &len), 0);
        assert_int_equal(savestate_decode(buf, len, &s, why, sizeof(why)), 0);
        free(buf);
        snprintf(path, sizeof(path), "%s/%s/demo.journal", f->state_a, VMM_RECORD_DIR);
        if (savestate_read_file(path, &buf, &len) == 0) {
                assert_int_equal(journal_replay(s, buf, len, &jr, why, sizeof(why)), 0);
                free(buf);
        }
        for (size_t i = 0; i < s->vm->n_processes; i++)
                if (s->vm->processes[i]->pid == pid)
                        return s->vm->processes[i]->state;
        return VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_UNSPECIFIED;
}

/* A process of daemon a that exits once the test says so; its exec's write is done when this returns. */
static uint32_t exec_until_told(struct fixture *f, struct vmm_vm *vm, const char *stop, const char *name)
{
        char script[256], out[128];

        snprintf(script, sizeof(script), "while [ ! -e %s ]; do sleep 0.01; done; echo done", stop);
        snprintf(out, sizeof(out), "%s/%s", f->dir, name);
        return exec_ok(f, vm, script, out);
}

static void exit_now(struct fixture *f, struct vmm_vm *vm, uint32_t pid, const char *stop)
{
        struct exited ex = { 0 };
        int fd = open(stop, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

        assert_true(fd >= 0);
        close(fd);
        wait_exit(f, vm, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 0);
}

/* Right after a write only an exec, whose pid waits for it, is written at once: an exit then waits
 * for the gap (an hour here, so the loop turns in between cannot reach it), and the next exec's
 * write carries it. Fails without the gap: the exit is on disk at once. */
static void test_record_within_a_burst_writes_only_what_an_exec_waits_for(void **state)
{
        struct fixture *f = *state;
        char stop[128], out[128];
        uint32_t first, second;
        struct vmm_vm *vm;

        snprintf(stop, sizeof(stop), "%s/stop", f->dir);
        restart_a_recording(f, 3600ull * 1000000000ull);
        vm = add_vm_connected(f, true);
        first = exec_until_told(f, vm, stop, "one.out");
        exit_now(f, vm, first, stop);
        run_for(f, 200ull * 1000000ull);
        assert_int_equal(recorded_state(f, first), VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_RUNNING);
        snprintf(out, sizeof(out), "%s/two.out", f->dir);
        second = exec_ok(f, vm, "echo two", out);
        assert_int_equal(recorded_state(f, first), VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_EXITED);
        assert_int_not_equal(recorded_state(f, second), VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_UNSPECIFIED);
}

/* What waited is written once the gap has passed, with nothing else happening. (It passes without
 * the gap too: it guards the deferred write against being dropped.) */
static void test_record_writes_what_waited_once_the_gap_passed(void **state)
{
        struct fixture *f = *state;
        uint64_t deadline = now_ns() + WAIT_NS;
        char stop[128];
        struct vmm_vm *vm;
        uint32_t pid;

        snprintf(stop, sizeof(stop), "%s/stop", f->dir);
        restart_a_recording(f, VMM_RECORD_BURST_GAP_NS);
        vm = add_vm_connected(f, true);
        pid = exec_until_told(f, vm, stop, "one.out");
        exit_now(f, vm, pid, stop);
        while (recorded_state(f, pid) != VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_EXITED) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("the exit never reached the record");
        }
}

int main(void)
{
        test_skip_without_io_uring();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_upstream_save_right_after_a_reconnect_waits_for_its_probe, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_upstream_stop_right_after_a_reconnect_waits_for_its_probe, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_upstream_removal_right_after_a_reconnect_waits_for_its_probe,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_removal_of_a_resume_guest_is_done_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_removals_waiting_when_the_daemon_stops_are_done_by_the_stop, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_record_within_a_burst_writes_only_what_an_exec_waits_for, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_record_writes_what_waited_once_the_gap_passed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_live_handover_moves_the_vm_and_the_guest_never_notices, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_upstream_live_handover_moves_the_vm_and_the_guest_never_notices,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_live_handover_unheld_serves_on, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_stdin_during_a_save_is_refused_and_the_save_answers, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_close_stdins_end_is_recorded_and_survives_a_crash, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_close_stdin_during_a_stops_flush_lets_it_finish, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_stdins_drain_in_flight_at_a_save_is_waited_for_and_counted,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_hold_given_up_during_close_stdins_drain_still_ends_the_stdin,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(
                        test_close_stdins_end_in_flight_at_a_save_reaches_the_process_after_restore, setup, teardown),
                cmocka_unit_test_setup_teardown(
                        test_close_stdins_end_in_flight_at_a_save_rolled_back_reaches_the_process, setup, teardown),
                cmocka_unit_test_setup_teardown(test_close_stdins_end_in_flight_at_a_hold_given_up_reaches_the_process,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(
                        test_close_stdins_end_in_flight_at_a_hold_reaches_the_process_after_a_hand_over, setup,
                        teardown),
                cmocka_unit_test_setup_teardown(
                        test_upstream_redial_of_an_ended_stream_during_a_hold_waits_for_the_new_daemon, setup,
                        teardown),
                cmocka_unit_test_setup_teardown(
                        test_upstream_redial_of_an_ended_stream_after_a_hand_over_reaches_the_new_daemon, setup,
                        teardown),
                cmocka_unit_test_setup_teardown(test_save_and_restore_keep_both_entries_of_a_reused_pid, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_record_recovers_the_entries_of_a_reused_pid, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restores_record_snapshot_waits_for_the_turn_its_reply_leaves_in,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_handed_back_waiter_stays_with_its_process_when_a_pid_was_reused,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_output_moves_exactly_once_across_save_and_restore, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_legacy_guest_loses_nothing_and_may_duplicate, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stdin_file_goes_on_exactly_across_save_and_restore, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_upstream_case_stdin_ends_at_the_save_without_the_end_confirmation,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_terminal_and_k8s_log_survive_save_and_restore, setup, teardown),
                cmocka_unit_test_setup_teardown(test_k8s_log_keeps_its_cap_through_save_and_restore, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restore_io_stdout_takes_a_journald_process_output, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_exit_during_blackout_reaches_the_destination, setup, teardown),
                cmocka_unit_test_setup_teardown(test_upstream_exec_exit_during_blackout_is_lost_and_said_so, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_upstream_init_exit_during_blackout_comes_from_the_probe, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_upstream_exit_is_reported_only_after_the_output_drained, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_upstream_init_output_arrives_whole_across_save_and_restore, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_upstream_stream_not_redialled_does_not_hold_the_exit, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(
                        test_exec_cancelled_after_it_reached_the_guest_runs_once_and_keeps_its_id, setup, teardown),
                cmocka_unit_test_setup_teardown(test_exec_cancelled_before_it_reached_the_guest_is_gone, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_new_exec_after_restore_never_reuses_a_port, setup, teardown),
                cmocka_unit_test_setup_teardown(test_start_and_exit_times_survive_save_and_restore, setup, teardown),
                cmocka_unit_test_setup_teardown(test_resume_on_the_source_rolls_back_a_save, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restore_refuses_endpoints_that_do_not_match_before_listening,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_thousand_processes_survive_save_and_restore, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hvsock_paths_outside_the_root_are_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(
                        test_kept_counts_follow_a_churn_of_execs_exits_forgets_save_restore_and_recovery, setup,
                        teardown),
        };

        signal(SIGPIPE, SIG_IGN);
        /* One test at a time while chasing a failure: VSOCKMUX_TEST_FILTER=test_thousand* */
        if (getenv("VSOCKMUX_TEST_FILTER"))
                cmocka_set_test_filter(getenv("VSOCKMUX_TEST_FILTER"));
        return cmocka_run_group_tests(tests, NULL, NULL);
}
