/* Every vsockmux command against a real vsockmuxd and a simulated guest, each its own process. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

static void test_vm_add_ls_rm_hvsock(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *vms, *vm;

        integ_cli(t, &res, NULL, "vm", "add", "demo", "--hvsock", integ_hvsock(t, "demo"), NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.err, "");
        integ_result_done(&res);

        integ_cli(t, &res, NULL, "vm", "ls", NULL);
        integ_assert_code(t, &res, 0);
        integ_assert_contains(res.out, "NAME");
        integ_assert_contains(res.out, "demo");
        integ_assert_contains(res.out, integ_hvsock(t, "demo"));
        integ_assert_contains(res.out, "waiting");
        integ_result_done(&res);

        vms = integ_cli_json(t, "vm", "ls", "--json", NULL);
        assert_int_equal(json_object_array_length(vms), 1);
        vm = json_object_array_get_idx(vms, 0);
        assert_string_equal(integ_json_str(vm, "name"), "demo");
        assert_string_equal(integ_json_str(vm, "transport"), "hvsock");
        assert_string_equal(integ_json_str(vm, "hvsock_path"), integ_hvsock(t, "demo"));
        assert_string_equal(integ_json_str(vm, "bridge"), "waiting");
        assert_int_equal(integ_json_int(vm, "containers"), 0);
        assert_int_equal(integ_json_int(vm, "processes"), 0);
        json_object_put(vms);

        /* The bridge connects once a guest dials in. */
        integ_sim_start(t, "demo");
        integ_wait_bridge(t, "demo", "connected");

        integ_cli(t, &res, NULL, "vm", "rm", "demo", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        vms = integ_cli_json(t, "vm", "ls", "--json", NULL);
        assert_int_equal(json_object_array_length(vms), 0);
        json_object_put(vms);

        integ_cli(t, &res, NULL, "vm", "rm", "demo", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "unknown VM 'demo'");
        integ_result_done(&res);
}

static void test_vm_add_cid_registers_without_vsock_loopback(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *vms, *vm;

        if (t->cfg->resume) {
                /* Registration does not involve stdio; and AF_VSOCK's bridge port is host-wide. */
                fprintf(stderr, "SKIP: --cid runs in the program without --resume only\n");
                skip();
        }
        /* The AF_VSOCK bridge port (0x40000000 on any CID) is one per host: another daemon (a
         * parallel test) may hold it for a while, which the daemon names clearly. */
        for (int tries = 0;; tries++) {
                integ_cli(t, &res, NULL, "vm", "add", "guest5", "--cid", "5", NULL);
                if (res.code == 0 || tries >= 60 || !strstr(res.err, "Address already in use"))
                        break;
                integ_assert_one_line_error(res.err);
                integ_result_done(&res);
                integ_sleep_ms(1000);
        }
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);

        vms = integ_cli_json(t, "vm", "ls", "--json", NULL);
        assert_int_equal(json_object_array_length(vms), 1);
        vm = json_object_array_get_idx(vms, 0);
        assert_string_equal(integ_json_str(vm, "name"), "guest5");
        assert_string_equal(integ_json_str(vm, "transport"), "vsock");
        assert_int_equal(integ_json_int(vm, "cid"), 5);
        assert_string_equal(integ_json_str(vm, "bridge"), "waiting");
        json_object_put(vms);

        integ_cli(t, &res, NULL, "vm", "ls", NULL);
        integ_assert_code(t, &res, 0);
        integ_assert_contains(res.out, "cid 5");
        integ_result_done(&res);

        /* A CID outside the guest range is the CLI's own clear error. */
        integ_cli(t, &res, NULL, "vm", "add", "bad", "--cid", "2", NULL);
        assert_int_not_equal(res.code, 0);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "--cid");
        integ_result_done(&res);
}

static void test_container_create_exec_shutdown(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *vms, *all, *p;
        char *end;
        long pid;

        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "container", "create", "demo", "c1", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        vms = integ_cli_json(t, "vm", "ls", "--json", NULL);
        assert_int_equal(integ_json_int(json_object_array_get_idx(vms, 0), "containers"), 1);
        json_object_put(vms);

        integ_cli(t, &res, NULL, "exec", "demo", "--container", "c1", "--", "sh", "-c", "echo in c1", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "in c1\n");
        integ_result_done(&res);

        integ_cli(t, &res, NULL, "exec", "demo", "--container", "c1", "--detach", "--", "true", NULL);
        integ_assert_code(t, &res, 0);
        pid = strtol(res.out, &end, 10);
        assert_true(pid > 0);
        integ_result_done(&res);
        p = integ_ps_find(t, "demo", pid, &all);
        assert_string_equal(integ_json_str(p, "container"), "c1");
        json_object_put(all);

        integ_cli(t, &res, NULL, "container", "shutdown", "demo", "c1", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        vms = integ_cli_json(t, "vm", "ls", "--json", NULL);
        assert_int_equal(integ_json_int(json_object_array_get_idx(vms, 0), "containers"), 0);
        json_object_put(vms);

        integ_cli(t, &res, NULL, "container", "create", "demo", "c2", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "container", "shutdown", "demo", "c2", "--force", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
}

static void test_exec_attached_relays_stdout_stderr_and_exit_code(void **state)
{
        struct integ *t = *state;
        struct integ_result res;

        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c",
                  "echo out one; echo err one >&2; printf 'out two\\n'; echo err two >&2; exit 3", NULL);
        integ_assert_code(t, &res, 3);
        assert_string_equal(res.out, "out one\nout two\n");
        assert_string_equal(res.err, "err one\nerr two\n");
        integ_result_done(&res);

        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", "echo ok", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "ok\n");
        assert_string_equal(res.err, "");
        integ_result_done(&res);

        /* Killed by a signal: 128+9, and never a 0. hcsshim's guest does not name a signal it did
         * not deliver for us (ExitCode 4294967295): 128, "killed by a signal". */
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", "echo before; kill -9 $$; echo after", NULL);
        integ_assert_code(t, &res, t->cfg->upstream ? 128 : 137);
        assert_string_equal(res.out, "before\n");
        integ_result_done(&res);

        /* Env and cwd reach the process. */
        integ_cli(t, &res, NULL, "exec", "demo", "--env", "GREETING=hello", "--cwd", "/tmp", "--", "sh", "-c",
                  "echo $GREETING; pwd", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "hello\n/tmp\n");
        integ_result_done(&res);
}

static void test_exec_detach_then_wait_reports_exit_code(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *w;
        char pid_s[32], script[512];
        long pid;

        integ_vm_with_sim(t, "demo");
        /* Runs until the test lets it go, so wait really waits. */
        snprintf(script, sizeof(script), "%s; exit 5", integ_wait_go(t));
        pid = integ_exec_detached(t, "demo", script);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);

        {
                char *args[] = { (char *)"wait", (char *)"demo", pid_s, NULL };
                char out[INTEG_PATH_MAX];
                int code;
                pid_t w_pid;

                snprintf(out, sizeof(out), "%s", integ_path(t, "wait.out"));
                w_pid = integ_spawn(t, integ_cli_argv(t, args), NULL, out, NULL);
                integ_sleep_ms(200); /* not asserted: only makes it likely wait is already waiting */
                assert_true(integ_alive(t, w_pid));
                integ_touch(integ_path(t, "go"));
                assert_int_equal(integ_reap(t, w_pid, INTEG_WAIT_MS, &code), 0);
                /* wait ends with the process's own exit code, as an attached exec does */
                assert_int_equal(code, 5);
                assert_true(integ_wait_file_contains(out, "exited 5\n", 1));
        }

        /* A second wait on the exited process answers at once, also as JSON. */
        w = integ_cli_json(t, "wait", "demo", pid_s, "--json", NULL);
        assert_int_equal(integ_json_int(w, "pid"), pid);
        assert_string_equal(integ_json_str(integ_json_get(w, "exit"), "kind"), "exited");
        assert_int_equal(integ_json_int(integ_json_get(w, "exit"), "code"), 5);
        json_object_put(w);

        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 5);
        assert_string_equal(res.out, "exited 5\n");
        integ_result_done(&res);
}

static void test_exec_stdout_stderr_to_files(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char out[INTEG_PATH_MAX], err[INTEG_PATH_MAX];
        char *s;

        integ_vm_with_sim(t, "demo");
        snprintf(out, sizeof(out), "%s", integ_path(t, "out.txt"));
        snprintf(err, sizeof(err), "%s", integ_path(t, "err.txt"));
        integ_cli(t, &res, NULL, "exec", "demo", "--stdout", out, "--stderr", err, "--", "sh", "-c",
                  "seq 1 1000; echo oops >&2; exit 2", NULL);
        integ_assert_code(t, &res, 2);
        assert_string_equal(res.out, "");
        assert_string_equal(res.err, "");
        integ_result_done(&res);

        s = integ_read_file(out, NULL);
        assert_non_null(s);
        assert_int_equal(strlen(s), 3893); /* `seq 1 1000 | wc -c` */
        assert_memory_equal(s, "1\n2\n3\n", 6);
        assert_string_equal(s + strlen(s) - 9, "999\n1000\n");
        free(s);
        s = integ_read_file(err, NULL);
        assert_string_equal(s, "oops\n");
        free(s);
}

static void test_exec_stdout_to_fifo(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char fifo[INTEG_PATH_MAX], buf[256];
        size_t len = 0;
        int fd;

        integ_vm_with_sim(t, "demo");
        snprintf(fifo, sizeof(fifo), "%s", integ_path(t, "out.fifo"));
        assert_int_equal(mkfifo(fifo, 0600), 0);
        /* The reader is there first: the daemon opens the fifo without blocking. */
        fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(fd >= 0);
        integ_cli(t, &res, NULL, "exec", "demo", "--stdout", fifo, "--", "sh", "-c", "echo through the fifo; exit 4",
                  NULL);
        integ_assert_code(t, &res, 4);
        integ_result_done(&res);
        for (int waited = 0;;) {
                ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

                if (n == 0)
                        break; /* the daemon closed its end after the drain */
                if (n < 0 && errno == EAGAIN) {
                        if ((waited += 10) >= INTEG_WAIT_MS)
                                fail_msg("the daemon never closed the fifo");
                        integ_sleep_ms(10);
                        continue;
                }
                assert_true(n > 0);
                len += (size_t)n;
        }
        buf[len] = 0;
        close(fd);
        assert_string_equal(buf, "through the fifo\n");
}

static void test_exec_stdin_from_file_through_cat(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char in[INTEG_PATH_MAX];
        size_t len = 300000;
        char *data = malloc(len);
        FILE *f;

        integ_vm_with_sim(t, "demo");
        assert_non_null(data);
        for (size_t i = 0; i < len; i++)
                data[i] = (char)('a' + (i * 7 + i / 251) % 26);
        data[len - 1] = '\n';
        snprintf(in, sizeof(in), "%s", integ_path(t, "in.txt"));
        f = fopen(in, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(data, 1, len, f), len);
        fclose(f);

        integ_cli(t, &res, NULL, "exec", "demo", "--stdin", in, "--", "cat", NULL);
        integ_assert_code(t, &res, 0);
        assert_int_equal(strlen(res.out), len);
        assert_memory_equal(res.out, data, len);
        integ_result_done(&res);

        /* The terminal's own stdin works too when it is a file. */
        integ_cli(t, &res, in, "exec", "demo", "--", "wc", "-c", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "300000\n");
        integ_result_done(&res);
        free(data);
}

static void test_ps_shows_pid_state_ports_and_byte_counts(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *all, *p, *ports, *bytes, *ex;
        char script[512];
        long done_pid, run_pid;

        integ_vm_with_sim(t, "demo");
        done_pid = integ_exec_detached(t, "demo", "printf 1234567890; printf abc >&2; exit 6");
        {
                char pid_s[32];

                snprintf(pid_s, sizeof(pid_s), "%ld", done_pid);
                integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
                integ_assert_code(t, &res, 6);
                integ_result_done(&res);
        }
        snprintf(script, sizeof(script), "echo running; %s", integ_alive_loop(t));
        run_pid = integ_exec_detached(t, "demo", script);

        p = integ_ps_find(t, "demo", done_pid, &all);
        assert_string_equal(integ_json_str(p, "state"), "exited");
        ports = integ_json_get(p, "ports");
        bytes = integ_json_get(p, "bytes");
        assert_true(integ_json_int(ports, "stdout") >= 0x40000001);
        assert_true(integ_json_int(ports, "stderr") >= 0x40000001);
        assert_int_not_equal(integ_json_int(ports, "stdout"), integ_json_int(ports, "stderr"));
        assert_int_equal(integ_json_int(bytes, "stdout"), 10);
        assert_int_equal(integ_json_int(bytes, "stderr"), 3);
        assert_int_equal(integ_json_int(bytes, "stdin"), 0);
        ex = integ_json_get(p, "exit");
        assert_string_equal(integ_json_str(ex, "kind"), "exited");
        assert_int_equal(integ_json_int(ex, "code"), 6);
        assert_string_equal(json_object_get_string(json_object_array_get_idx(integ_json_get(p, "argv"), 0)), "sh");

        {
                int64_t done_stdout = integ_json_int(ports, "stdout");

                json_object_put(all);
                p = integ_ps_find(t, "demo", run_pid, &all);
                assert_string_equal(integ_json_str(p, "state"), "running");
                /* Ports are never reused within a VM. */
                assert_true(integ_json_int(integ_json_get(p, "ports"), "stdout") > done_stdout);
                assert_int_equal(integ_json_int(integ_json_get(p, "bytes"), "stdout"), 8);
                json_object_put(all);
        }

        integ_cli(t, &res, NULL, "ps", "demo", NULL);
        integ_assert_code(t, &res, 0);
        integ_assert_contains(res.out, "PID");
        integ_assert_contains(res.out, "running");
        integ_assert_contains(res.out, "exited 6");
        integ_assert_contains(res.out, "0/10/3");
        integ_result_done(&res);
}

static void test_kill_default_is_sigterm_and_gone_pid_is_success(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char script[512], out[INTEG_PATH_MAX], pid_s[32];
        long pid;

        integ_vm_for_kills(t, "demo");
        snprintf(out, sizeof(out), "%s", integ_path(t, "trap.out"));
        snprintf(script, sizeof(script), "trap 'echo got TERM; exit 7' TERM; echo ready; %s", integ_alive_loop(t));
        pid = integ_exec_killable(t, "demo", out, script);
        /* The trap is set once "ready" is out. */
        assert_true(integ_wait_file_contains(out, "ready\n", INTEG_WAIT_MS));
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "kill", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.err, "");
        integ_result_done(&res);

        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 7);
        assert_string_equal(res.out, "exited 7\n");
        integ_result_done(&res);
        assert_true(integ_wait_file_contains(out, "ready\ngot TERM\n", 1));

        /* Gone already: success, with a note on stderr. */
        integ_cli(t, &res, NULL, "kill", "demo", pid_s, "--signal", "KILL", NULL);
        integ_assert_code(t, &res, 0);
        integ_assert_contains(res.err, "not running");
        integ_result_done(&res);
        /* A pid the VM never knew is not found (test-records.c covers the other methods). */
        integ_cli(t, &res, NULL, "kill", "demo", "99999", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "no process 99999");
        integ_result_done(&res);

        /* An explicit signal by number. */
        pid = integ_exec_killable(t, "demo", NULL, integ_alive_loop(t));
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "kill", "demo", pid_s, "--signal", "9", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        /* Our guest reports 128+9 as an exit code; hcsshim's reports a signal's death, which the
         * daemon names as the one its Kill delivered. */
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 137);
        assert_string_equal(res.out, t->cfg->upstream ? "killed by SIGKILL\n" : "exited 137\n");
        integ_result_done(&res);
}

/* Reads fd into buf until it holds needle; fails after INTEG_WAIT_MS or at EOF. */
static void read_until(int fd, char *buf, size_t cap, size_t *len, const char *needle)
{
        for (int waited = 0; !strstr(buf, needle);) {
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                ssize_t n;

                if (poll(&pfd, 1, 100) == 0) {
                        waited += 100;
                        if (waited >= INTEG_WAIT_MS)
                                fail_msg("no '%s' in attach output '%s'", needle, buf);
                        continue;
                }
                n = read(fd, buf + *len, cap - 1 - *len);
                if (n <= 0)
                        fail_msg("attach output ended before '%s': '%s'", needle, buf);
                *len += (size_t)n;
                buf[*len] = 0;
        }
}

static void test_attach_sees_output_of_running_process(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char script[512], pid_s[32], buf[65536] = "";
        size_t len = 0;
        int in[2], out[2];
        long pid;
        pid_t attach;

        integ_vm_for_kills(t, "demo");
        /* "before" is backlog by the time attach connects; the ticker starts only after that. */
        snprintf(script, sizeof(script),
                 "echo before; %s; "
                 "i=0; while [ -d %s ]; do echo line $i; i=$((i+1)); sleep 0.1; done",
                 integ_wait_go(t), t->dir);
        pid = integ_exec_killable(t, "demo", NULL, script);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);

        /* A stdin that stays open: this attach only follows output. */
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        {
                char *args[] = { (char *)"attach", (char *)"demo", pid_s, NULL };

                attach = integ_spawn_fds(t, integ_cli_argv(t, args), in[0], out[1], -1);
        }
        close(in[0]);
        close(out[1]);
        read_until(out[0], buf, sizeof(buf), &len, "before\n");
        integ_touch(integ_path(t, "go"));
        read_until(out[0], buf, sizeof(buf), &len, "line 5\n");
        integ_assert_contains(buf, "before\nline 0\nline 1\nline 2\nline 3\nline 4\nline 5\n");
        assert_true(integ_alive(t, attach));

        integ_cli(t, &res, NULL, "kill", "demo", pid_s, "--signal", "KILL", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_kill(t, attach, SIGKILL);
        close(in[1]);
        close(out[0]);
}

/* Output with a fifo endpoint may leave the ring for relay/'s splice path (always, in
 * integ-commands-splice) and so pass the daemon by: an attach client that comes later must still
 * get every line from its arrival on, in order, while the fifo gets every line once. */
static void test_attach_follows_output_that_also_goes_to_a_fifo(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char fifo[INTEG_PATH_MAX], script[512], pid_s[32], buf[65536] = "", *first, *end;
        static char piped[1 << 20];
        size_t len = 0, plen = 0;
        int in[2], out[2], fd, k;
        long pid;
        pid_t attach;

        integ_vm_for_kills(t, "demo");
        snprintf(fifo, sizeof(fifo), "%s", integ_path(t, "out.fifo"));
        assert_int_equal(mkfifo(fifo, 0600), 0);
        fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(fd >= 0);
        snprintf(script, sizeof(script), "i=0; while [ -d %s ]; do echo line $i; i=$((i+1)); sleep 0.01; done", t->dir);
        pid = integ_exec_killable(t, "demo", fifo, script);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);

        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        {
                char *args[] = { (char *)"attach", (char *)"demo", pid_s, NULL };

                attach = integ_spawn_fds(t, integ_cli_argv(t, args), in[0], out[1], -1);
        }
        close(in[0]);
        close(out[1]);
        /* With an endpoint there is no backlog: the client sees lines from some k on. */
        read_until(out[0], buf, sizeof(buf), &len, "line ");
        first = strstr(buf, "line ");
        k = atoi(first + 5);
        {
                char want[32];

                snprintf(want, sizeof(want), "line %d\n", k + 20);
                read_until(out[0], buf, sizeof(buf), &len, want);
        }
        for (int i = k;; i++) {
                char want[32];
                int wl = snprintf(want, sizeof(want), "line %d\n", i);

                if (first + wl > buf + len)
                        break;
                if (memcmp(first, want, (size_t)wl) != 0)
                        fail_msg("attach output at line %d: '%.20s'", i, first);
                first += wl;
        }
        integ_cli(t, &res, NULL, "kill", "demo", pid_s, "--signal", "KILL", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_kill(t, attach, SIGKILL);
        close(in[1]);
        close(out[0]);
        /* The fifo: every line from 0, once, in order, until the daemon closes its end. */
        for (int waited = 0;;) {
                ssize_t n = read(fd, piped + plen, sizeof(piped) - 1 - plen);

                if (n == 0)
                        break;
                if (n < 0 && errno == EAGAIN) {
                        if ((waited += 10) >= INTEG_WAIT_MS)
                                fail_msg("the daemon never closed the fifo");
                        integ_sleep_ms(10);
                        continue;
                }
                assert_true(n > 0);
                plen += (size_t)n;
        }
        close(fd);
        piped[plen] = 0;
        end = piped;
        for (int i = 0; end < piped + plen; i++) {
                char want[32];
                int wl = snprintf(want, sizeof(want), "line %d\n", i);

                if (strncmp(end, want, (size_t)wl) != 0)
                        fail_msg("fifo output at line %d: '%.20s'", i, end);
                end += wl;
        }
        assert_true(strstr(piped, "line 20\n") != NULL);
}

static void test_attach_socket_opens_on_first_attach_only(void **state)
{
        struct integ *t = *state;
        struct json_object *all, *p;
        char path[INTEG_PATH_MAX], again[INTEG_PATH_MAX];
        struct stat st;
        long pid;
        int fd;

        integ_vm_for_kills(t, "demo");
        pid = integ_exec_killable(t, "demo", NULL, "echo kept; exec sleep 1000");
        /* Nobody attached yet: no socket, so an idle process costs no fd or inode for it. */
        p = integ_ps_find(t, "demo", pid, &all);
        assert_false(json_object_object_get_ex(p, "attach_socket", NULL));
        json_object_put(all);

        integ_attach_path(t, "demo", pid, path, sizeof(path));
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0600);
        p = integ_ps_find(t, "demo", pid, &all);
        assert_string_equal(integ_json_str(p, "attach_socket"), path);
        json_object_put(all);
        /* Asking again names the same open socket, and a client still gets the backlog. */
        integ_attach_path(t, "demo", pid, again, sizeof(again));
        assert_string_equal(again, path);
        fd = integ_connect_unix(path, SOCK_SEQPACKET);
        {
                char buf[256];
                ssize_t n = recv(fd, buf, sizeof(buf), 0);

                assert_true(n == 1 + 5);
                assert_int_equal(buf[0], 2); /* conmon's stdout stream byte */
                assert_memory_equal(buf + 1, "kept\n", 5);
        }
        close(fd);
        {
                struct integ_result res;
                char pid_s[32];

                snprintf(pid_s, sizeof(pid_s), "%ld", pid);
                integ_cli(t, &res, NULL, "kill", "demo", pid_s, "--signal", "KILL", NULL);
                integ_assert_code(t, &res, 0);
                integ_result_done(&res);
        }
}

static void test_attach_ends_when_process_exits(void **state)
{
        struct integ *t = *state;
        char script[512], pid_s[32], out[INTEG_PATH_MAX];
        int in[2], code;
        long pid;
        pid_t attach;

        integ_vm_with_sim(t, "demo");
        snprintf(script, sizeof(script), "echo first; %s; echo last; exit 3", integ_wait_go(t));
        pid = integ_exec_detached(t, "demo", script);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        snprintf(out, sizeof(out), "%s", integ_path(t, "attach.out"));
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        {
                char *args[] = { (char *)"attach", (char *)"demo", pid_s, NULL };
                int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

                attach = integ_spawn_fds(t, integ_cli_argv(t, args), in[0], fd, -1);
                close(fd);
        }
        close(in[0]);
        assert_true(integ_wait_file_contains(out, "first\n", INTEG_WAIT_MS));
        integ_touch(integ_path(t, "go"));
        /* The process exited: attach must end by itself. */
        if (integ_reap(t, attach, INTEG_WAIT_MS, &code) < 0)
                fail_msg("attach still running %d ms after the process exited", INTEG_WAIT_MS);
        assert_int_equal(code, 0);
        assert_true(integ_wait_file_contains(out, "first\nlast\n", 1));
        close(in[1]);
}

static void test_attach_with_stdin_at_eof_still_follows_output(void **state)
{
        struct integ *t = *state;
        char script[512], pid_s[32], out[INTEG_PATH_MAX];
        long pid;
        pid_t attach;

        integ_vm_with_sim(t, "demo");
        snprintf(script, sizeof(script), "echo first; %s; echo last; %s", integ_wait_go(t), integ_alive_loop(t));
        pid = integ_exec_detached(t, "demo", script);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        snprintf(out, sizeof(out), "%s", integ_path(t, "attach.out"));
        /* `attach ... </dev/null` from a script: the backlog, then what comes after. */
        {
                char *args[] = { (char *)"attach", (char *)"demo", pid_s, NULL };

                attach = integ_spawn(t, integ_cli_argv(t, args), NULL, out, NULL);
        }
        for (int waited = 0; !integ_wait_file_contains(out, "first\n", 100) && integ_alive(t, attach);)
                if ((waited += 100) >= INTEG_WAIT_MS)
                        fail_msg("attach printed no backlog");
        integ_touch(integ_path(t, "go"));
        if (!integ_wait_file_contains(out, "first\nlast\n", INTEG_WAIT_MS)) {
                char *s = integ_read_file(out, NULL);

                fail_msg("attach with stdin at EOF printed '%s' (still running: %s)", s,
                         integ_alive(t, attach) ? "yes" : "no");
        }
}

static void test_stats_counts_vms_processes_and_bytes(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *s, *pool, *loop, *hist;
        int64_t sum = 0;

        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "vm", "add", "other", "--hvsock", integ_hvsock(t, "other"), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", "printf 0123456789012345678; printf x >&2", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);

        s = integ_cli_json(t, "stats", "--json", NULL);
        assert_int_equal(integ_json_int(s, "vms"), 2);
        assert_int_equal(integ_json_int(s, "processes"), 1);
        assert_int_equal(integ_json_int(s, "streams"), 0);
        assert_true(integ_json_int(s, "bytes_relayed") >= 20);
        /* 20 bytes are small segments: the ring carries them, never splice(2). */
        assert_int_equal(integ_json_int(s, "bytes_spliced"), 0);
        assert_true(integ_json_int(s, "memory_in_use") > 0);
        assert_true(integ_json_int(s, "control_connections") >= 1);
        pool = integ_json_get(s, "buffer_pool");
        assert_true(integ_json_int(pool, "buffer_size") > 0);
        assert_true(integ_json_int(pool, "buffers_total") > 0);
        assert_int_equal(integ_json_int(pool, "buffers_in_use"), 0);
        /* The loop's turns: it woke for the exec, and every turn is in one histogram bucket. */
        loop = integ_json_get(s, "loop");
        assert_true(integ_json_int(loop, "turns") > 0);
        assert_true(integ_json_int(loop, "cqes") > 0);
        assert_true(integ_json_int(loop, "turns_waited") <= integ_json_int(loop, "turns"));
        hist = integ_json_get(loop, "cqes_per_turn");
        assert_true(json_object_array_length(hist) > 1);
        for (size_t i = 0; i < json_object_array_length(hist); i++)
                sum += json_object_get_int64(json_object_array_get_idx(hist, i));
        assert_int_equal(sum, integ_json_int(loop, "turns"));
        json_object_put(s);

        integ_cli(t, &res, NULL, "stats", NULL);
        integ_assert_code(t, &res, 0);
        integ_assert_contains(res.out, "vms:");
        integ_assert_contains(res.out, "processes:");
        integ_assert_contains(res.out, "bytes relayed:");
        integ_result_done(&res);
}

/* The events whose "vm" is name, from a file of JSON lines. */
static struct json_object *events_for(const char *path, const char *name)
{
        struct json_object *list = json_object_new_array();
        char *s = integ_read_file(path, NULL), *save = NULL;

        assert_non_null(s);
        for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                struct json_object *ev = json_tokener_parse(line), *vm;

                if (!ev)
                        fail_msg("events --json printed a line that is not JSON: '%s'", line);
                if (json_object_object_get_ex(ev, "vm", &vm) && !strcmp(json_object_get_string(vm), name))
                        json_object_array_add(list, ev);
                else
                        json_object_put(ev);
        }
        free(s);
        return list;
}

static void test_events_json_reports_vm_added_and_process_lifecycle(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *evs, *ev;
        char out[INTEG_PATH_MAX], probe[32];
        pid_t events;
        bool listening = false;
        long pid;

        snprintf(out, sizeof(out), "%s", integ_path(t, "events.out"));
        {
                char *args[] = { (char *)"events", (char *)"--json", NULL };

                events = integ_spawn(t, integ_cli_argv(t, args), NULL, out, NULL);
        }
        /* The subscription is live once one of our probe VMs shows up in it. */
        for (int i = 0; i < 60 && !listening; i++) {
                snprintf(probe, sizeof(probe), "probe%d", i);
                integ_cli(t, &res, NULL, "vm", "add", probe, "--hvsock", integ_hvsock(t, probe), NULL);
                integ_assert_code(t, &res, 0);
                integ_result_done(&res);
                listening = integ_wait_file_contains(out, probe, 1000);
        }
        assert_true(listening);

        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", "exit 9", NULL);
        integ_assert_code(t, &res, 9);
        integ_result_done(&res);
        assert_true(integ_wait_file_contains(out, "process-exited", INTEG_WAIT_MS));
        integ_kill(t, events, SIGTERM);

        evs = events_for(out, "demo");
        if (json_object_array_length(evs) < 3)
                fail_msg("expected vm-added, process-started, process-exited for demo: %s",
                         json_object_to_json_string(evs));
        ev = json_object_array_get_idx(evs, 0);
        assert_string_equal(integ_json_str(ev, "kind"), "vm-added");
        assert_non_null(integ_json_str(ev, "time"));
        /* Bridge state changes may sit between; the process events come in order. */
        {
                struct json_object *started = NULL, *exited = NULL;

                for (size_t i = 1; i < json_object_array_length(evs); i++) {
                        ev = json_object_array_get_idx(evs, i);
                        if (!strcmp(integ_json_str(ev, "kind"), "process-started"))
                                started = ev;
                        else if (!strcmp(integ_json_str(ev, "kind"), "process-exited")) {
                                assert_non_null(started);
                                exited = ev;
                        }
                }
                assert_non_null(started);
                assert_non_null(exited);
                pid = integ_json_int(started, "pid");
                assert_true(pid > 0);
                assert_int_equal(integ_json_int(exited, "pid"), pid);
                assert_string_equal(integ_json_str(integ_json_get(exited, "exit"), "kind"), "exited");
                assert_int_equal(integ_json_int(integ_json_get(exited, "exit"), "code"), 9);
        }
        json_object_put(evs);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_vm_add_ls_rm_hvsock),
                cmocka_unit_test(test_vm_add_cid_registers_without_vsock_loopback),
                cmocka_unit_test(test_container_create_exec_shutdown),
                cmocka_unit_test(test_exec_attached_relays_stdout_stderr_and_exit_code),
                cmocka_unit_test(test_exec_detach_then_wait_reports_exit_code),
                cmocka_unit_test(test_exec_stdout_stderr_to_files),
                cmocka_unit_test(test_exec_stdout_to_fifo),
                cmocka_unit_test(test_exec_stdin_from_file_through_cat),
                cmocka_unit_test(test_ps_shows_pid_state_ports_and_byte_counts),
                cmocka_unit_test(test_kill_default_is_sigterm_and_gone_pid_is_success),
                cmocka_unit_test(test_attach_sees_output_of_running_process),
                cmocka_unit_test(test_attach_follows_output_that_also_goes_to_a_fifo),
                cmocka_unit_test(test_attach_socket_opens_on_first_attach_only),
                cmocka_unit_test(test_attach_ends_when_process_exits),
                cmocka_unit_test(test_attach_with_stdin_at_eof_still_follows_output),
                cmocka_unit_test(test_stats_counts_vms_processes_and_bytes),
                cmocka_unit_test(test_events_json_reports_vm_added_and_process_lifecycle),
        };

        return integ_run("integration-commands", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
