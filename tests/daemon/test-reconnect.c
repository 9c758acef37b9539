/* A guest whose stdio connections reset again after it already redialled: every byte reaches the
 * endpoint exactly once and in order, on a plain daemon and after a save and restore; and a guest
 * still redialling a removed VM's port is never wired into a new exec of a re-added VM. Real relay
 * loop, two struct vmm on it (two daemons in one process), the real guest simulator over hybrid
 * vsock, real processes writing real files. Each reset waits for what the simulator logs when its
 * stream resumed, and for bytes past that point: nothing here depends on timing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/vmm.h"
#include "ports/ports.h"
#include "relay/relay.h"
#include "tests/daemon/fifo-endpoint.h"
#include "tests/daemon/vmm-test.h"
#include "tests/io-uring-skip.h"

extern char **environ;

/* Bounds on waiting on a loaded machine under ASan; nothing here asserts speed. */
#define WAIT_NS (120ull * 1000000000ull)
#define STEP_NS (10ll * 1000000ll)
/* Bytes that must reach the endpoint over a connection before it is reset again. */
#define FLOW_BYTES 2000u
#define WRITER_EXIT 7
/* The simulator's line after a stdout connection's V4 handshake on a redial; with --fidelity
 * upstream (no handshake, no replay) the line that names where it goes on. */
#define RESUMED "stdout: resuming at byte "
#define RESUMED_UPSTREAM "stdout: going on at byte "

/* Which guest a run plays (argv[1]): ours, with the resume extension, or hcsshim's (--upstream). */
struct mode {
        bool upstream;
};

struct fixture {
        char dir[64];
        char state_a[96], state_b[96], sim_log[96], stop[96];
        struct relay_transport transport;
        struct relay *r;
        struct vmm *a, *b;
        pid_t sim;
        bool no_panic; /* upstream: --no-bridge-panic, a reply made with no bridge up is lost */
        struct test_endpoints *ep;
        /* hcsshim's guest: the writer runs as a container's init, the one process whose stdio it
         * redials, and the guest is paused for a save, as a migration's last phase pauses the VM. */
        bool upstream;
        bool container_created;
};

/* Runs the loop until cond(arg) holds; fails the test past WAIT_NS (VSOCKMUX_TEST_WAIT_S may
 * shorten it when checking that a test fails without the guarantee). */
static void run_until(struct fixture *f, bool (*cond)(struct fixture *f, const void *arg), const void *arg,
                      const char *what)
{
        const char *env = getenv("VSOCKMUX_TEST_WAIT_S");
        uint64_t deadline = now_ns() + (env ? strtoull(env, NULL, 10) * 1000000000ull : WAIT_NS);

        while (!cond(f, arg)) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("timed out waiting for %s", what);
        }
}

static bool flag_set(struct fixture *f, const void *arg)
{
        return *(const int *)arg != 0;
}

static bool bridge_connected(struct fixture *f, const void *arg)
{
        return vmm_vm_bridge_state((struct vmm_vm *)arg) == BRIDGE_CONN_CONNECTED;
}

/* The simulator's log is how the test sees a redialled stream resume. */
static void sim_start(struct fixture *f)
{
        char *argv[] = { (char *)sim_path(),
                         "--hvsock",
                         f->transport.uds_path,
                         f->upstream ? (char *)"--fidelity=upstream" : NULL,
                         f->upstream && f->no_panic ? (char *)"--no-bridge-panic" : NULL,
                         NULL };
        posix_spawn_file_actions_t fa;

        assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
        assert_int_equal(
                posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, f->sim_log, O_WRONLY | O_CREAT | O_APPEND, 0600),
                0);
        assert_int_equal(posix_spawn(&f->sim, argv[0], &fa, NULL, argv, environ), 0);
        posix_spawn_file_actions_destroy(&fa);
}

static int setup(void **state)
{
        const struct mode *mode = *state;
        struct fixture *f = calloc(1, sizeof(*f));
        struct vmm_config cfg;

        assert_non_null(f);
        f->upstream = mode->upstream;
        snprintf(f->dir, sizeof(f->dir), "/tmp/vsockmux-rc-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->state_a, sizeof(f->state_a), "%s/a", f->dir);
        snprintf(f->state_b, sizeof(f->state_b), "%s/b", f->dir);
        snprintf(f->sim_log, sizeof(f->sim_log), "%s/sim.log", f->dir);
        snprintf(f->stop, sizeof(f->stop), "%s/stop", f->dir);
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
        if (getenv("VSOCKMUX_KEEP_TEST_DIRS"))
                fprintf(stderr, "kept %s\n", f->dir);
        else {
                snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
                assert_int_equal(system(cmd), 0);
        }
        free(f);
        return 0;
}

static struct vmm_vm *add_vm_connected(struct fixture *f, struct vmm *m)
{
        struct vmm_vm *vm;

        assert_int_equal(vmm_vm_add(m, "demo", &f->transport, &vm), 0);
        if (f->sim < 0)
                sim_start(f);
        run_until(f, bridge_connected, vm, "the simulator's bridge");
        return vm;
}

static void on_done(int error, const char *message, void *userdata)
{
        *(int *)userdata = error < 0 ? error : 1;
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
        run_until(f, flag_set, &st.count, "the exec");
        if (st.error)
                fail_msg("exec failed: %s", st.message);
        return st.pid;
}

static uint32_t exec_ok(struct fixture *f, struct vmm_vm *vm, const char *script, const char *out)
{
        return exec_in(f, vm, NULL, script, out);
}

/* Numbered lines, a pause after every burst of them, until the stop file appears; then "end N"
 * and a known exit code. */
static uint32_t exec_writer_bursts(struct fixture *f, struct vmm_vm *vm, const char *out, unsigned burst)
{
        char script[512];

        snprintf(script, sizeof(script),
                 "i=0; while [ ! -e %s ]; do echo line $i; i=$((i+1)); [ $((i %% %u)) -eq 0 ] && sleep 0.02; "
                 "done; echo end $i; exit %d",
                 f->stop, burst, WRITER_EXIT);
        if (f->upstream && !f->container_created) {
                int done = 0;

                assert_int_equal(vmm_container_create(vm, "c1", NULL, on_done, &done), 0);
                run_until(f, flag_set, &done, "the container");
                assert_int_equal(done, 1);
                f->container_created = true;
        }
        return exec_in(f, vm, f->upstream ? "c1" : NULL, script, out);
}

/* Slowly: 100 lines per burst. */
static uint32_t exec_writer(struct fixture *f, struct vmm_vm *vm, const char *out)
{
        return exec_writer_bursts(f, vm, out, 100);
}

static size_t file_size(const char *path)
{
        struct stat st;

        return path && stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

static char *slurp(const char *path, size_t *ret_len)
{
        size_t len = file_size(path);
        FILE *fp = fopen(path, "rb");
        char *buf = malloc(len + 1);

        assert_non_null(fp);
        assert_non_null(buf);
        len = fread(buf, 1, len, fp);
        buf[len] = '\0';
        fclose(fp);
        *ret_len = len;
        return buf;
}

/* The endpoints a stream's output went to, in order (source daemon first). */
struct outputs {
        const char *path[2];
        size_t min;
};

static bool outputs_reach(struct fixture *f, const void *arg)
{
        const struct outputs *o = arg;

        return file_size(o->path[0]) + file_size(o->path[1]) >= o->min;
}

static void wait_for_bytes(struct fixture *f, const char *a, const char *b, size_t min)
{
        struct outputs o = { .path = { a, b }, .min = min };

        run_until(f, outputs_reach, &o, "output at the endpoint");
}

/* How many stdout streams resumed after a redial, per the simulator's log; *ret_at: the byte the
 * last one resumed at. */
static unsigned sim_resumes(struct fixture *f, uint64_t *ret_at)
{
        const char *marker = f->upstream ? RESUMED_UPSTREAM : RESUMED;
        _cleanup_free_ char *log = NULL;
        unsigned n = 0;
        size_t len;

        if (file_size(f->sim_log) == 0)
                return 0;
        log = slurp(f->sim_log, &len);
        for (const char *p = strstr(log, marker); p; p = strstr(p + 1, marker)) {
                n++;
                if (ret_at)
                        *ret_at = strtoull(p + strlen(marker), NULL, 10);
        }
        return n;
}

struct resumes {
        unsigned min;
};

static bool resumed(struct fixture *f, const void *arg)
{
        return sim_resumes(f, NULL) >= ((const struct resumes *)arg)->min;
}

/* Resets the guest's connections with sig (SIGUSR2: stdio only; SIGUSR1: the bridge too), waits
 * until stdout resumed on a new connection and FLOW_BYTES more went over it. */
static void reset_and_wait_for_flow(struct fixture *f, int sig, const char *a, const char *b)
{
        struct resumes want = { .min = sim_resumes(f, NULL) + 1 };
        uint64_t at = 0;

        assert_int_equal(kill(f->sim, sig), 0);
        run_until(f, resumed, &want, "the guest's stdout to resume on a new connection");
        sim_resumes(f, &at);
        wait_for_bytes(f, a, b, (size_t)at + FLOW_BYTES);
}

static void wait_exit(struct fixture *f, struct vmm_vm *vm, uint32_t pid, struct exited *ex)
{
        struct vmm_process *p = vmm_process_find(vm, pid);
        struct vmm_waiter *w = NULL;
        int r;

        assert_non_null(p);
        r = vmm_process_wait(p, on_exit_seen, ex, &w, &ex->exit);
        if (r == 1)
                ex->count = 1;
        else {
                assert_int_equal(r, 0);
                run_until(f, flag_set, &ex->count, "the exit");
        }
        /* The exit is reported once all output is at the endpoint: in the fifo variant, in the file too. */
        test_endpoints_settle(f->ep);
}

/* Once vm's guest is connected: an exit while no bridge connection is up makes hcsshim's guest
 * panic at the wait's answer, and its VM stops (sim/bridge.c). */
static void stop_writer(struct fixture *f, struct vmm_vm *vm)
{
        int fd;

        run_until(f, bridge_connected, vm, "the guest's bridge before the writer's exit");
        fd = open(f->stop, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
}

/* "line 0".."line N-1" exactly once and in order across a then b, then "end N", nothing else. */
static void assert_exactly_once(struct fixture *f, const char *a, const char *b)
{
        _cleanup_free_ char *all = NULL;
        size_t la = 0, lb = 0, off = 0;
        unsigned n = 0;

        {
                _cleanup_free_ char *ba = slurp(a, &la), *bb = b ? slurp(b, &lb) : strdup("");

                assert_non_null(bb);
                all = malloc(la + lb + 1);
                assert_non_null(all);
                memcpy(all, ba, la);
                memcpy(all + la, bb, lb);
                all[la + lb] = '\0';
        }
        for (;;) {
                char want[32];
                int wl = snprintf(want, sizeof(want), "line %u\n", n);

                if (off + (size_t)wl > la + lb || memcmp(all + off, want, (size_t)wl) != 0)
                        break;
                off += (size_t)wl;
                n++;
        }
        {
                char want[32];
                int wl = snprintf(want, sizeof(want), "end %u\n", n);

                if (la + lb - off != (size_t)wl || memcmp(all + off, want, (size_t)wl) != 0)
                        fail_msg("after %u good lines (byte %zu of %zu) the output has '%.40s', not '%s'", n, off,
                                 la + lb, all + off, want);
        }
        /* A run that never got far proves nothing about the resets. */
        assert_true(n >= 3 * FLOW_BYTES / 10);
        test_endpoints_assert_spliced(f->ep, f->r);
}

static void test_stdio_reset_twice_delivers_every_byte_once(void **state)
{
        struct fixture *f = *state;
        struct exited ex = { 0 };
        struct vmm_vm *vm;
        char out[128];
        uint32_t pid;

        snprintf(out, sizeof(out), "%s/out", f->dir);
        vm = add_vm_connected(f, f->a);
        pid = exec_writer(f, vm, out);
        wait_for_bytes(f, out, NULL, FLOW_BYTES);
        /* The second reset hits a stream the guest had already redialled once. */
        reset_and_wait_for_flow(f, SIGUSR2, out, NULL);
        reset_and_wait_for_flow(f, SIGUSR2, out, NULL);
        stop_writer(f, vm);
        wait_exit(f, vm, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, WRITER_EXIT);
        assert_exactly_once(f, out, NULL);
}

static void test_full_reset_twice_delivers_every_byte_once(void **state)
{
        struct fixture *f = *state;
        struct exited ex = { 0 };
        struct vmm_vm *vm;
        char out[128];
        uint32_t pid;

        snprintf(out, sizeof(out), "%s/out", f->dir);
        /* The second reset may come within the probe after the first reconnect (TimeoutInMs 50):
         * hcsshim's guest panics at its answer with no bridge up, and its VM stops (sim/bridge.c).
         * What is tested is the output and exit of a guest that lives on. */
        f->no_panic = true;
        vm = add_vm_connected(f, f->a);
        pid = exec_writer(f, vm, out);
        wait_for_bytes(f, out, NULL, FLOW_BYTES);
        /* The bridge drops too: the outstanding wait must still bring the exit code. */
        reset_and_wait_for_flow(f, SIGUSR1, out, NULL);
        reset_and_wait_for_flow(f, SIGUSR1, out, NULL);
        stop_writer(f, vm);
        wait_exit(f, vm, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, WRITER_EXIT);
        assert_exactly_once(f, out, NULL);
}

/* Saves on a, restores on b with stdout going to out_b, waits for bytes on b; returns the VM on b. */
static struct vmm_vm *move_writer(struct fixture *f, const char *out_a, const char *out_b, uint32_t *ret_pid)
{
        struct vmm_restore_io io = { 0 };
        struct saved sv = { 0 };
        struct vmm_vm *vm, *vb = NULL;
        struct vmm_error err = {};
        size_t before;

        vm = add_vm_connected(f, f->a);
        io.pid = exec_writer(f, vm, out_a);
        wait_for_bytes(f, out_a, NULL, FLOW_BYTES);
        if (f->upstream) {
                int status;

                /* Without the resume handshake, what the running guest wrote after the freeze's
                 * drain would die with the connection: a migration pauses the VM for this phase. */
                assert_int_equal(kill(f->sim, SIGSTOP), 0);
                assert_int_equal(waitpid(f->sim, &status, WUNTRACED), f->sim);
        }
        assert_int_equal(vmm_save(vm, on_saved, &sv, &err), 0);
        run_until(f, flag_set, &sv.count, "the save");
        assert_int_equal(sv.error, 0);
        if (f->upstream)
                assert_int_equal(kill(f->sim, SIGCONT), 0);
        before = file_size(out_a);
        io.path[VMM_STDOUT] = test_endpoint(f->ep, out_b);
        if (vmm_restore(f->b, sv.blob, sv.len, NULL, NULL, &io, 1, &vb, &err) < 0)
                fail_msg("restore failed: %s", err.message);
        free(sv.blob);
        /* The save was the guest's first reset: it redialled the destination, and bytes flow there. */
        wait_for_bytes(f, out_a, out_b, before + FLOW_BYTES);
        assert_true(file_size(out_b) > 0);
        *ret_pid = io.pid;
        return vb;
}

static void test_stdio_resets_after_restore_deliver_every_byte_once(void **state)
{
        struct fixture *f = *state;
        struct exited ex = { 0 };
        char out_a[128], out_b[128];
        struct vmm_vm *vb;
        uint32_t pid;

        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        snprintf(out_b, sizeof(out_b), "%s/out-b", f->dir);
        vb = move_writer(f, out_a, out_b, &pid);
        reset_and_wait_for_flow(f, SIGUSR2, out_a, out_b);
        reset_and_wait_for_flow(f, SIGUSR2, out_a, out_b);
        stop_writer(f, vb);
        wait_exit(f, vb, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, WRITER_EXIT);
        assert_exactly_once(f, out_a, out_b);
}

/* What tests/vm/test-migrate-e2e.sh would do with a SIGUSR1 once the destination resumed. */
static void test_full_reset_after_restore_delivers_every_byte_once(void **state)
{
        struct fixture *f = *state;
        struct exited ex = { 0 };
        char out_a[128], out_b[128];
        struct vmm_vm *vb;
        uint32_t pid;

        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        snprintf(out_b, sizeof(out_b), "%s/out-b", f->dir);
        /* The reset may come within the destination's probe (TimeoutInMs 50): hcsshim's guest
         * panics at its answer with no bridge up, and its VM stops (sim/bridge.c). What is tested
         * is the output of a guest that lives on. */
        f->no_panic = true;
        vb = move_writer(f, out_a, out_b, &pid);
        reset_and_wait_for_flow(f, SIGUSR1, out_a, out_b);
        stop_writer(f, vb);
        wait_exit(f, vb, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, WRITER_EXIT);
        assert_exactly_once(f, out_a, out_b);
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

        nanosleep(&ts, NULL);
}

/* After the writer had a while to write into the stream's connection, the guest drops its stdio
 * connections (SIGUSR2) and redials; returns once its log says it redialled. */
static void drop_after_a_while_and_wait_for_the_redial(struct fixture *f)
{
        unsigned want;
        uint64_t deadline;

        sleep_ms(300);
        want = sim_resumes(f, NULL) + 1;
        assert_int_equal(kill(f->sim, SIGUSR2), 0);
        for (deadline = now_ns() + WAIT_NS; sim_resumes(f, NULL) < want; sleep_ms(10))
                if (now_ns() > deadline)
                        fail_msg("timed out waiting for the guest's redial");
}

/* hcsshim's guest (--upstream only: with the resume extension a redialled guest writes nothing
 * before the host's count) drops stdout and redials at once, while the daemon's loop stands still:
 * the old connection ends unread, and the guest writes into the new one, not accepted yet, what
 * it had not sent and more of the writer's. Returns the writer's pid. */
static uint32_t redial_unseen(struct fixture *f, struct vmm_vm *vm, const char *out)
{
        uint32_t pid;

        pid = exec_writer_bursts(f, vm, out, 2000);
        wait_for_bytes(f, out, NULL, FLOW_BYTES);
        drop_after_a_while_and_wait_for_the_redial(f);
        sleep_ms(100);
        return pid;
}

static void skip_unless_upstream(const struct fixture *f)
{
        if (f->upstream)
                return;
        print_message("skipped: a guest with the resume extension waits for the daemon's count on a redial\n");
        skip();
}

/* The daemon keeps such a redial until the old connection ends (6f71aa4); a save that comes
 * meanwhile must read both, or what the guest wrote into the kept one dies with it (that guest
 * never replays). The guest is paused for the save and the source VM removed after it, as a
 * migration does. */
static void test_redial_kept_at_a_save_loses_nothing(void **state)
{
        struct fixture *f = *state;
        struct vmm_restore_io io = { 0 };
        struct exited ex = { 0 };
        struct saved sv = { 0 };
        struct vmm_error err = {};
        struct vmm_vm *vm, *vb = NULL;
        char out_a[128], out_b[128];
        size_t before;
        int status;

        skip_unless_upstream(f);
        snprintf(out_a, sizeof(out_a), "%s/out-a", f->dir);
        snprintf(out_b, sizeof(out_b), "%s/out-b", f->dir);
        vm = add_vm_connected(f, f->a);
        io.pid = redial_unseen(f, vm, out_a);
        assert_int_equal(kill(f->sim, SIGSTOP), 0);
        assert_int_equal(waitpid(f->sim, &status, WUNTRACED), f->sim);
        assert_int_equal(vmm_save(vm, on_saved, &sv, &err), 0);
        run_until(f, flag_set, &sv.count, "the save");
        assert_int_equal(sv.error, 0);
        assert_int_equal(vmm_vm_remove(f->a, "demo"), 0);
        assert_int_equal(kill(f->sim, SIGCONT), 0);
        before = file_size(out_a);
        io.path[VMM_STDOUT] = test_endpoint(f->ep, out_b);
        if (vmm_restore(f->b, sv.blob, sv.len, NULL, NULL, &io, 1, &vb, &err) < 0)
                fail_msg("restore failed: %s", err.message);
        free(sv.blob);
        wait_for_bytes(f, out_a, out_b, before + FLOW_BYTES);
        stop_writer(f, vb);
        wait_exit(f, vb, io.pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, WRITER_EXIT);
        assert_exactly_once(f, out_a, out_b);
}

static void on_held(struct vmm_vm *vm, void *userdata)
{
        *(int *)userdata = 1;
}

static void on_hold_gone(struct vmm_vm *vm, void *userdata)
{
        *(int *)userdata = -1;
}

static const struct vmm_vm_freeze_ops hold_ops = { .on_frozen = on_held, .on_gone = on_hold_gone };

/* Hands the held VM over to f->b through the wire, the old daemon gone, and lets the writer run
 * on: every line of path arrives exactly once and the exit is the writer's. */
static void hand_over_and_finish(struct fixture *f, struct vmm_vm *vm, const char *path, uint32_t pid)
{
        _cleanup_free_ uint8_t *wire = NULL;
        Vsockmux__State__Vm out, *in;
        struct vmm_fds fds = { 0 };
        struct vmm_error err = {};
        struct exited ex = { 0 };
        struct vmm_vm *vb = NULL;
        size_t len, before;

        if (vmm_vm_hand_over(vm, &out, &fds, &err) < 0)
                fail_msg("hand over: %s", err.message);
        len = vsockmux__state__vm__get_packed_size(&out);
        wire = malloc(len + 1);
        assert_non_null(wire);
        vsockmux__state__vm__pack(&out, wire);
        vmm_vm_export_done(&out);
        in = vsockmux__state__vm__unpack(NULL, len, wire);
        assert_non_null(in);
        /* The old daemon exits once the new one has it all. */
        f->a = vmm_free(f->a);
        before = file_size(path);
        if (vmm_adopt(f->b, in, fds.fds, fds.n, &vb, &err) < 0)
                fail_msg("adopt: %s", err.message);
        vsockmux__state__vm__free_unpacked(in, NULL);
        free(fds.fds);
        wait_for_bytes(f, path, NULL, before + FLOW_BYTES);
        stop_writer(f, vb);
        wait_exit(f, vb, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, WRITER_EXIT);
        assert_exactly_once(f, path, NULL);
}

/* Makes a VM on f->a whose writer's output goes to out, held (*held set by hold_ops) with a redial
 * of the guest's in it; returns the VM, *ret_pid the writer's. */
typedef struct vmm_vm *(*held_redial_fn)(struct fixture *f, const char *out, int *held, uint32_t *ret_pid);

/* hcsshim's guest only (skip_unless_upstream): make's held VM is handed over to f->b and finishes
 * there (hand_over_and_finish). */
static void hand_over_a_held_redial(struct fixture *f, held_redial_fn make)
{
        struct vmm_vm *vm;
        char path[128];
        uint32_t pid;
        int held = 0; /* hold_ops write it until the VM is gone */

        skip_unless_upstream(f);
        snprintf(path, sizeof(path), "%s/out", f->dir);
        vm = make(f, path, &held, &pid);
        hand_over_and_finish(f, vm, path, pid);
}

/* A held_redial_fn: the redial came before the hold (redial_unseen). */
static struct vmm_vm *redial_unseen_then_hold(struct fixture *f, const char *out, int *held, uint32_t *ret_pid)
{
        struct vmm_error err = {};
        struct vmm_vm *vm;

        vm = add_vm_connected(f, f->a);
        *ret_pid = redial_unseen(f, vm, out);
        assert_int_equal(vmm_vm_hold(vm, &hold_ops, held, &err), 0);
        run_until(f, flag_set, held, "the hold");
        assert_int_equal(*held, 1);
        return vm;
}

/* The same at a live upgrade, the guest running on: daemon a holds the VM and hands it out with
 * its fds, then ends; daemon b takes it over. Every line once, in the one file. */
static void test_redial_kept_at_a_hand_over_loses_nothing(void **state)
{
        hand_over_a_held_redial(*state, redial_unseen_then_hold);
}

/* How many connections to the socket whose path ends in suffix wait in its listener's backlog, not
 * accepted yet: /proc/net/unix lists them with the listener's path (as bound: through
 * /proc/self/fd/N/) and state 02 (SS_CONNECTING: no socket of ours yet). */
static unsigned unix_backlog(const char *suffix)
{
        size_t sl = strlen(suffix);

        FILE *fp = fopen("/proc/net/unix", "r");
        char line[512];
        unsigned n = 0;

        assert_non_null(fp);
        while (fgets(line, sizeof(line), fp)) {
                char p[256] = "";
                unsigned st = 0;
                size_t pl;

                if (sscanf(line, "%*s %*s %*s %*s %*s %x %*s %255s", &st, p) != 2 || st != 2)
                        continue;
                pl = strlen(p);
                if (pl >= sl && strcmp(p + pl - sl, suffix) == 0)
                        n++;
        }
        fclose(fp);
        return n;
}

static bool backlog_empty(struct fixture *f, const void *arg)
{
        return unix_backlog(arg) == 0;
}

/* Redials that come after the hold's freeze has finished: the guest writes on into the frozen
 * connection (its bytes wait in the socket), then drops it and redials, n times, and the held
 * daemon's loop, running on (an upgrade waits for its other VMs), accepts each redial. */
static struct vmm_vm *redials_after_a_hold(struct fixture *f, const char *out, int *held, uint32_t *ret_pid, unsigned n)
{
        struct vmm_process_info info;
        struct vmm_error err = {};
        struct vmm_vm *vm;
        char port_path[160];
        uint32_t pid;

        /* A name no other test's sockets have: /proc/net/unix lists every process's. */
        snprintf(f->transport.uds_path, sizeof(f->transport.uds_path), "%s/held-%d.vsock", f->dir, (int)getpid());
        vm = add_vm_connected(f, f->a);
        pid = exec_writer_bursts(f, vm, out, 2000);
        wait_for_bytes(f, out, NULL, FLOW_BYTES);
        vmm_process_get_info(vmm_process_find(vm, pid), &info);
        snprintf(port_path, sizeof(port_path), "%s_%u", strrchr(f->transport.uds_path, '/'), info.ports[VMM_STDOUT]);
        assert_int_equal(unix_backlog(port_path), 0);
        assert_int_equal(vmm_vm_hold(vm, &hold_ops, held, &err), 0);
        run_until(f, flag_set, held, "the hold");
        assert_int_equal(*held, 1);
        for (unsigned i = 0; i < n; i++) {
                /* The writer goes on into the frozen connection (or the last redial, kept unread):
                 * what it wrote waits in the socket. */
                drop_after_a_while_and_wait_for_the_redial(f);
                assert_int_equal(unix_backlog(port_path), 1);
                run_until(f, backlog_empty, port_path, "the redial accepted");
        }
        *ret_pid = pid;
        return vm;
}

/* A held_redial_fn: one redial after the hold's freeze. */
static struct vmm_vm *redial_after_a_hold(struct fixture *f, const char *out, int *held, uint32_t *ret_pid)
{
        return redials_after_a_hold(f, out, held, ret_pid, 1);
}

/* A held_redial_fn: two, the second while the first is kept: hcsshim's guest dials again only
 * once a write into the first failed (internal/guest/transport/reconnect.go), and what it had
 * written into it before is written for good as far as it knows. */
static struct vmm_vm *two_redials_after_a_hold(struct fixture *f, const char *out, int *held, uint32_t *ret_pid)
{
        return redials_after_a_hold(f, out, held, ret_pid, 2);
}

/* Then the VM is handed over: what waits in the old connection goes first, then the redial's;
 * every line once, in the one file, on daemon b. */
static void test_redial_after_a_hand_overs_freeze_loses_nothing(void **state)
{
        hand_over_a_held_redial(*state, redial_after_a_hold);
}

/* Every kept redial goes on the new daemon too, each after the one before it ended. */
static void test_two_redials_after_a_hand_overs_freeze_lose_nothing(void **state)
{
        hand_over_a_held_redial(*state, two_redials_after_a_hold);
}

/* Or the upgrade gives up and the VM serves on where it is: the same order at the thaw. */
static void release_a_held_redial(struct fixture *f, held_redial_fn make)
{
        struct exited ex = { 0 };
        struct vmm_vm *vm;
        char path[128];
        size_t before;
        uint32_t pid;
        int held = 0;

        skip_unless_upstream(f);
        snprintf(path, sizeof(path), "%s/out", f->dir);
        vm = make(f, path, &held, &pid);
        vmm_vm_unhold(vm);
        before = file_size(path);
        wait_for_bytes(f, path, NULL, before + FLOW_BYTES);
        stop_writer(f, vm);
        wait_exit(f, vm, pid, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, WRITER_EXIT);
        assert_exactly_once(f, path, NULL);
}

static void test_redial_after_a_holds_freeze_loses_nothing_when_it_is_released(void **state)
{
        release_a_held_redial(*state, redial_after_a_hold);
}

/* Each kept redial in turn, in the order the guest dialled them. */
static void test_two_redials_after_a_holds_freeze_lose_nothing_when_it_is_released(void **state)
{
        release_a_held_redial(*state, two_redials_after_a_hold);
}

static void port_max(const struct vmm_process_info *i, uint32_t *max)
{
        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                if (i->ports[k] > *max)
                        *max = i->ports[k];
}

/* `vm rm` then `vm add` on the same hvsock path while the guest lives on: its old process keeps
 * redialling its stdio ports, and a new exec must not get them, or that output would land in the
 * new process's endpoint. */
static void test_readded_vm_never_hands_out_a_removed_vms_ports(void **state)
{
        struct fixture *f = *state;
        struct vmm_process_info old_info, new_info;
        struct exited ex = { 0 };
        struct vmm_vm *vm;
        char out_old[128], out_new[128];
        uint32_t pid_old, pid_new, old_max = 0;

        snprintf(out_old, sizeof(out_old), "%s/out-old", f->dir);
        snprintf(out_new, sizeof(out_new), "%s/out-new", f->dir);
        vm = add_vm_connected(f, f->a);
        pid_old = exec_writer(f, vm, out_old);
        wait_for_bytes(f, out_old, NULL, FLOW_BYTES);
        vmm_process_get_info(vmm_process_find(vm, pid_old), &old_info);
        port_max(&old_info, &old_max);
        assert_true(old_max >= PORTS_FIRST);
        assert_int_equal(vmm_vm_remove(f->a, "demo"), 0);
        /* The same guest comes back to the re-added VM's bridge; its old writer runs on. */
        vm = add_vm_connected(f, f->a);
        pid_new = exec_ok(f, vm, "echo new; exit 3", out_new);
        assert_int_not_equal(pid_new, pid_old);
        vmm_process_get_info(vmm_process_find(vm, pid_new), &new_info);
        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                if (new_info.ports[k] != 0)
                        assert_true(new_info.ports[k] > old_max);
        wait_exit(f, vm, pid_new, &ex);
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 3);
        {
                _cleanup_free_ char *got = NULL;
                size_t len;

                got = slurp(out_new, &len);
                assert_string_equal(got, "new\n");
        }
}

/* A restore onto a daemon that remembers a higher floor for the transport keeps the higher one. */
static void test_restore_below_a_remembered_floor_keeps_the_higher_one(void **state)
{
        struct fixture *f = *state;
        struct vmm_process_info info;
        struct saved sv = { 0 };
        struct vmm_vm *vm, *back = NULL;
        char out[128], out2[128];
        struct vmm_error err = {};
        uint32_t pid, pid2, max = 0;

        snprintf(out, sizeof(out), "%s/out", f->dir);
        snprintf(out2, sizeof(out2), "%s/out2", f->dir);
        /* The removal comes while the resumed source's probe (TimeoutInMs 50) is pending in the
         * guest, and may close the second process's stdout before its echo (SIGPIPE, an exit):
         * hcsshim's guest panics at either answer with no bridge up, and its VM stops
         * (sim/bridge.c). What is tested here is the port floor, so the guest lives on. */
        f->no_panic = true;
        vm = add_vm_connected(f, f->a);
        pid = exec_ok(f, vm, "echo up; sleep 600", out);
        wait_for_bytes(f, out, NULL, 3);
        assert_int_equal(vmm_save(vm, on_saved, &sv, &err), 0);
        run_until(f, flag_set, &sv.count, "the save");
        assert_int_equal(sv.error, 0);
        /* The save is rolled back, and the VM hands out more ports before it is removed. */
        assert_int_equal(vmm_resume(vm, &err), 0);
        run_until(f, bridge_connected, vm, "the guest back on the source");
        pid2 = exec_ok(f, vm, "echo more; sleep 600", out2);
        vmm_process_get_info(vmm_process_find(vm, pid2), &info);
        port_max(&info, &max);
        assert_int_equal(vmm_vm_remove(f->a, "demo"), 0);
        if (vmm_restore(f->a, sv.blob, sv.len, NULL, NULL, NULL, 0, &back, &err) < 0)
                fail_msg("restore below the remembered floor failed: %s", err.message);
        assert_non_null(vmm_process_find(back, pid));
        run_until(f, bridge_connected, back, "the guest on the restored VM");
        pid2 = exec_ok(f, back, "exit 0", out2);
        vmm_process_get_info(vmm_process_find(back, pid2), &info);
        for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                if (info.ports[k] != 0)
                        assert_true(info.ports[k] > max);
        free(sv.blob);
}

/* --upstream: every test against hcsshim's guest (vsockmux-sim --fidelity upstream), where the
 * writer is a container's init: the one process whose stdio that guest redials. */
int main(int argc, char **argv)
{
        static struct mode mode;

        test_skip_without_io_uring();
        mode.upstream = argc > 1 && strcmp(argv[1], "--upstream") == 0;
        const char *only = getenv("VSOCKMUX_TEST_ONLY");
#define T(fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &mode)
        const struct CMUnitTest tests[] = {
                T(test_stdio_reset_twice_delivers_every_byte_once),
                T(test_stdio_resets_after_restore_deliver_every_byte_once),
                T(test_full_reset_twice_delivers_every_byte_once),
                T(test_full_reset_after_restore_delivers_every_byte_once),
                T(test_redial_kept_at_a_save_loses_nothing),
                T(test_redial_kept_at_a_hand_over_loses_nothing),
                T(test_redial_after_a_hand_overs_freeze_loses_nothing),
                T(test_redial_after_a_holds_freeze_loses_nothing_when_it_is_released),
                T(test_two_redials_after_a_hand_overs_freeze_lose_nothing),
                T(test_two_redials_after_a_holds_freeze_lose_nothing_when_it_is_released),
                T(test_readded_vm_never_hands_out_a_removed_vms_ports),
                T(test_restore_below_a_remembered_floor_keeps_the_higher_one),
        };
#undef T

        signal(SIGPIPE, SIG_IGN);
        if (only)
                cmocka_set_test_filter(only);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
