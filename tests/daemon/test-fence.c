/* Fencing: one owner per VM. Two struct vmm on one real relay loop (two daemons in one process:
 * flock locks are per open file, so they fence each other as two processes would), the real
 * simulator dialling over hybrid vsock. A resume, restore or add that another daemon's ownership
 * forbids is refused by name before it touches a socket. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/fence.h"
#include "daemon/vmm.h"
#include "ports/ports.h"
#include "relay/relay.h"
#include "tests/daemon/vmm-test.h"
#include "tests/io-uring-skip.h"

extern char **environ;

#define WAIT_NS (180ull * 1000000000ull)
#define STEP_NS (10ll * 1000000ll)

struct fixture {
        char dir[64];
        char state_a[96], state_b[96];
        struct relay_transport transport;
        struct relay *r;
        struct vmm *a, *b;
        pid_t sim;
};

static void run_until(struct fixture *f, const int *flag, const char *what)
{
        uint64_t deadline = now_ns() + WAIT_NS;

        while (!*flag) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("timed out waiting for %s", what);
        }
}

static void run_until_connected(struct fixture *f, struct vmm_vm *vm)
{
        uint64_t deadline = now_ns() + WAIT_NS;

        while (vmm_vm_bridge_state(vm) != BRIDGE_CONN_CONNECTED) {
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
                if (now_ns() > deadline)
                        fail_msg("the simulator's bridge did not connect");
        }
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        struct vmm_config cfg;

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/vsockmux-fence-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->state_a, sizeof(f->state_a), "%s/a", f->dir);
        snprintf(f->state_b, sizeof(f->state_b), "%s/b", f->dir);
        f->transport.kind = RELAY_TRANSPORT_HVSOCK;
        snprintf(f->transport.uds_path, sizeof(f->transport.uds_path), "%s/vm.vsock", f->dir);
        assert_int_equal(relay_new(NULL, &f->r), 0);
        vmm_config_default(&cfg);
        cfg.hvsock_root = f->dir;
        cfg.state_dir = f->state_a;
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &f->a), 0);
        cfg.state_dir = f->state_b;
        assert_int_equal(vmm_new(f->r, &cfg, NULL, NULL, &f->b), 0);
        f->sim = -1;
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
        snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static struct vmm_vm *add_vm_connected(struct fixture *f)
{
        char *argv[] = { (char *)sim_path(), "--hvsock", f->transport.uds_path, NULL };
        struct vmm_vm *vm;

        assert_int_equal(vmm_vm_add(f->a, "demo", &f->transport, &vm), 0);
        assert_int_equal(posix_spawn(&f->sim, argv[0], NULL, NULL, argv, environ), 0);
        run_until_connected(f, vm);
        return vm;
}

static uint32_t exec_ok(struct fixture *f, struct vmm_vm *vm, const char *script, const char *out)
{
        const char *argv[] = { "sh", "-c", script };
        struct vmm_exec_params params = { .argv = argv, .n_argv = 3, .stdout_path = out };
        struct started st = { 0 };
        struct vmm_error err = {};

        assert_int_equal(vmm_exec(vm, &params, on_started, &st, &err), 0);
        run_until(f, &st.count, "the exec");
        if (st.error)
                fail_msg("exec failed: %s", st.message);
        return st.pid;
}

static struct saved save_vm(struct fixture *f, struct vmm_vm *vm)
{
        struct saved sv = { 0 };
        struct vmm_error err = {};

        assert_int_equal(vmm_save(vm, on_saved, &sv, &err), 0);
        run_until(f, &sv.count, "the save");
        assert_int_equal(sv.error, 0);
        return sv;
}

static ino_t bridge_inode(struct fixture *f)
{
        char path[160];
        struct stat st;

        snprintf(path, sizeof(path), "%s_%u", f->transport.uds_path, PORTS_BRIDGE);
        assert_int_equal(stat(path, &st), 0);
        return st.st_ino;
}

/* The case: after B restored, A's resume used to reset B's live bridge ("a newer guest
 * connection replaces the current one") and then fail with EADDRINUSE. */
static void test_resume_after_a_restore_elsewhere_is_refused_before_touching_anything(void **state)
{
        struct fixture *f = *state;
        struct vmm_vm *va, *vb = NULL;
        struct vmm_vm_counters before, after;
        struct exited ex = { 0 };
        struct vmm_waiter *w = NULL;
        char out[128], go[128], script[300];
        struct vmm_error err = {};
        struct saved sv;
        ino_t ino;
        uint32_t pid;
        int r;

        snprintf(out, sizeof(out), "%s/out", f->dir);
        snprintf(go, sizeof(go), "%s/go", f->dir);
        snprintf(script, sizeof(script), "while [ ! -e %s ]; do sleep 0.05; done; echo done; exit 4", go);
        va = add_vm_connected(f);
        pid = exec_ok(f, va, script, out);
        sv = save_vm(f, va);
        assert_int_equal(vmm_restore(f->b, sv.blob, sv.len, NULL, NULL, NULL, 0, &vb, &err), 0);
        run_until_connected(f, vb);
        vmm_vm_get_counters(vb, &before);
        ino = bridge_inode(f);

        /* B holds the lock: refused by name, before any socket is touched. */
        r = vmm_resume(va, &err);
        assert_int_equal(r, -EBUSY);
        if (!strstr(err.message, "another vsockmuxd") || !strstr(err.message, "one VM has one owner"))
                fail_msg("refusal does not say who owns the VM: %s", err.message);
        assert_true(vmm_vm_is_saved(va));
        /* B's bridge is the one it had: same socket file, no reconnect, still connected. */
        for (int i = 0; i < 30; i++)
                assert_int_equal(relay_run_once(f->r, STEP_NS), 0);
        assert_int_equal(bridge_inode(f), ino);
        assert_int_equal(vmm_vm_bridge_state(vb), BRIDGE_CONN_CONNECTED);
        vmm_vm_get_counters(vb, &after);
        assert_int_equal(after.bridge_connects, before.bridge_connects);

        /* B hands the VM on again and lets go of the lock: A's state is still older than what B
         * served, so A's resume stays refused, now by the generation. */
        {
                struct saved sv2 = save_vm(f, vb);

                r = vmm_resume(va, &err);
                assert_int_equal(r, -ESTALE);
                if (!strstr(err.message, "generation"))
                        fail_msg("refusal does not name the generation: %s", err.message);
                /* A's old blob cannot come back either; B's newest can. */
                assert_int_equal(vmm_vm_remove(f->b, "demo"), 0);
                vb = NULL;
                r = vmm_restore(f->b, sv.blob, sv.len, NULL, NULL, NULL, 0, &vb, &err);
                assert_int_equal(r, -ESTALE);
                assert_null(vmm_vm_find(f->b, "demo"));
                assert_int_equal(vmm_restore(f->b, sv2.blob, sv2.len, NULL, NULL, NULL, 0, &vb, &err), 0);
                free(sv2.blob);
        }
        run_until_connected(f, vb);
        /* The process is B's and finishes there. */
        assert_int_equal(vmm_process_wait(vmm_process_find(vb, pid), on_exit_seen, &ex, &w, &ex.exit), 0);
        fclose(fopen(go, "w"));
        run_until(f, &ex.count, "the exit on B");
        assert_int_equal(ex.exit.kind, VMM_EXIT_EXITED);
        assert_int_equal(ex.exit.code, 4);
        free(sv.blob);
}

/* Two daemons never both serve one VM: a second add on a served transport is refused. */
static void test_second_daemon_cannot_add_a_served_transport(void **state)
{
        struct fixture *f = *state;
        struct vmm_vm *va, *vb = NULL;
        ino_t ino;

        va = add_vm_connected(f);
        ino = bridge_inode(f);
        assert_int_equal(vmm_vm_add(f->b, "demo", &f->transport, &vb), -EBUSY);
        assert_null(vmm_vm_find(f->b, "demo"));
        assert_int_equal(bridge_inode(f), ino);
        assert_int_equal(vmm_vm_bridge_state(va), BRIDGE_CONN_CONNECTED);
        /* Once A lets go, B may. */
        assert_int_equal(vmm_vm_remove(f->a, "demo"), 0);
        assert_int_equal(vmm_vm_add(f->b, "demo", &f->transport, &vb), 0);
}

/* A resume of a save nobody restored still rolls back. */
static void test_resume_with_nobody_else_is_allowed(void **state)
{
        struct fixture *f = *state;
        struct vmm_vm *va;
        struct saved sv;
        struct vmm_error err = {};

        va = add_vm_connected(f);
        sv = save_vm(f, va);
        if (vmm_resume(va, &err) < 0)
                fail_msg("resume refused: %s", err.message);
        run_until_connected(f, va);
        free(sv.blob);
}

static void test_fence_file_parse(void **state)
{
        uint64_t gen = 99;
        pid_t pid = 99;

        assert_int_equal(fence_parse("", 0, &gen, &pid), 0);
        assert_int_equal(gen, 0);
        assert_int_equal(fence_parse("generation                    7 pid         42\n", 47, &gen, &pid), 0);
        assert_int_equal(gen, 7);
        assert_int_equal(pid, 42);
        assert_int_equal(fence_parse("generation 7 pid 42\n", 20, &gen, &pid), 0);
        assert_int_equal(fence_parse("generation 7 pid 42", 19, &gen, &pid), -EBADMSG);
        assert_int_equal(fence_parse("generation 7 pid 0\n", 19, &gen, &pid), -EBADMSG);
        assert_int_equal(fence_parse("generation x pid 4\n", 19, &gen, &pid), -EBADMSG);
        assert_int_equal(fence_parse("generation 99999999999999999999 pid 4\n", 38, &gen, &pid), -EBADMSG);
        assert_int_equal(fence_parse("generation 7 pid 42\nX", 21, &gen, &pid), -EBADMSG);
}

static void test_fence_lock_excludes_and_keeps_the_generation(void **state)
{
        struct fixture *f = *state;
        struct fence *x = NULL, *y = NULL;
        char path[128];
        uint64_t gen;
        pid_t pid;

        snprintf(path, sizeof(path), "%s/t.lock", f->dir);
        assert_int_equal(fence_acquire(path, &x), 0);
        assert_int_equal(fence_generation(x), 0);
        assert_int_equal(fence_set_generation(x, 5), 0);
        assert_int_equal(fence_acquire(path, &y), -EBUSY);
        assert_int_equal(fence_peek(path, &gen, &pid), 0);
        assert_int_equal(gen, 5);
        assert_int_equal(pid, getpid());
        x = fence_release(x);
        assert_int_equal(fence_acquire(path, &y), 0);
        assert_int_equal(fence_generation(y), 5);
        fence_release(y);
}

int main(void)
{
        test_skip_without_io_uring();
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_fence_file_parse, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fence_lock_excludes_and_keeps_the_generation, setup, teardown),
                cmocka_unit_test_setup_teardown(
                        test_resume_after_a_restore_elsewhere_is_refused_before_touching_anything, setup, teardown),
                cmocka_unit_test_setup_teardown(test_second_daemon_cannot_add_a_served_transport, setup, teardown),
                cmocka_unit_test_setup_teardown(test_resume_with_nobody_else_is_allowed, setup, teardown),
        };

        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
