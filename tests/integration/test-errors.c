/* Error paths across the three processes: bad input, missing guests, lost bridges, slow and hostile clients. */
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

#define ERR_BIG_OUTPUT (20u << 20)
#define ERR_BRIDGE_PORT 0x40000000u /* the bridge listener: <hvsock>_1073741824 */

static void assert_daemon_serves(struct integ *t)
{
        struct json_object *s = integ_cli_json(t, "stats", "--json", NULL);

        assert_true(integ_json_int(s, "vms") >= 0);
        json_object_put(s);
}

static void test_wrong_socket_path_is_a_one_line_error(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char path[INTEG_PATH_MAX];
        char *argv[] = { (char *)t->cfg->cli, (char *)"--socket", path, (char *)"vm", (char *)"ls", NULL };

        snprintf(path, sizeof(path), "%s", integ_path(t, "no-such.sock"));
        integ_runv(t, &res, NULL, argv);
        assert_int_equal(res.code, 1);
        assert_string_equal(res.out, "");
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, path);
        integ_assert_contains(res.err, "cannot reach vsockmuxd");
        integ_result_done(&res);

        /* The same through $VSOCKMUX_SOCKET is covered by the CLI's own tests; a file that is not a
         * socket is just as clear. */
        integ_touch(path);
        integ_runv(t, &res, NULL, argv);
        assert_int_equal(res.code, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, path);
        integ_result_done(&res);
}

static void test_unknown_vm_is_named_by_every_command(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        static const char *const cmds[][6] = {
                { "vm", "rm", "ghost" },
                { "ps", "ghost" },
                { "wait", "ghost", "1" },
                { "kill", "ghost", "1" },
                { "attach", "ghost", "1" },
                { "container", "create", "ghost", "c1" },
                { "container", "shutdown", "ghost", "c1" },
        };

        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
                integ_cliv(t, &res, NULL, (char *const *)cmds[i]);
                if (res.code != 1)
                        fail_msg("%s %s: exit %d, stderr '%s'", cmds[i][0], cmds[i][1], res.code, res.err);
                integ_assert_one_line_error(res.err);
                integ_assert_contains(res.err, "unknown VM 'ghost'");
                integ_result_done(&res);
        }
}

static void test_exec_unknown_vm_exits_125_naming_it(void **state)
{
        struct integ *t = *state;
        struct integ_result res;

        /* Under -Db_sanitize=address this once aborted vsockmuxd (on_exec read its freed request);
         * the teardown's check of the daemon's exit code catches it. */
        /* exec's own code for "could not be started". */
        integ_cli(t, &res, NULL, "exec", "ghost", "--", "true", NULL);
        integ_assert_code(t, &res, 125);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "unknown VM 'ghost'");
        integ_result_done(&res);
}

static void test_usage_errors_exit_2_with_one_line(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        static const struct {
                const char *args[8];
                const char *says;
        } cases[] = {
                { { "bogus" }, "unknown command 'bogus'" },
                { { "exec", "demo" }, "--" },
                { { "vm", "add" }, "VM NAME" },
                { { "vm", "add", "x", "--hvsock", "rel/path" }, "'rel/path'" },
                { { "vm", "add", "x" }, "--hvsock" },
                { { "exec", "demo", "--json", "--", "true" }, "--detach" },
                { { "kill", "demo", "1", "--signal", "NOPE" }, "'NOPE'" },
                /* A word is an exec id (NOT_FOUND, not a usage error); a number with junk is not a pid. */
                { { "wait", "demo", "0x1" }, "'0x1'" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                integ_cliv(t, &res, NULL, (char *const *)cases[i].args);
                if (res.code != 2)
                        fail_msg("%s %s: exit %d, stderr '%s'", cases[i].args[0],
                                 cases[i].args[1] ? cases[i].args[1] : "", res.code, res.err);
                integ_assert_one_line_error(res.err);
                integ_assert_contains(res.err, cases[i].says);
                integ_result_done(&res);
        }
}

static void test_wait_and_attach_unknown_pid_name_it(void **state)
{
        struct integ *t = *state;
        struct integ_result res;

        integ_cli(t, &res, NULL, "vm", "add", "demo", "--hvsock", integ_hvsock(t, "demo"), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "wait", "demo", "4242", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "4242");
        integ_assert_contains(res.err, "demo");
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "attach", "demo", "4242", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "4242");
        integ_result_done(&res);
}

static void test_vm_add_twice_fails_naming_the_vm(void **state)
{
        struct integ *t = *state;
        struct integ_result res;

        integ_cli(t, &res, NULL, "vm", "add", "demo", "--hvsock", integ_hvsock(t, "demo"), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "vm", "add", "demo", "--hvsock", integ_hvsock(t, "other"), NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "'demo'");
        integ_assert_contains(res.err, "exists");
        integ_result_done(&res);

        /* The first registration is untouched. */
        {
                struct json_object *vms = integ_cli_json(t, "vm", "ls", "--json", NULL);

                assert_int_equal(json_object_array_length(vms), 1);
                assert_string_equal(integ_json_str(json_object_array_get_idx(vms, 0), "hvsock_path"),
                                    integ_hvsock(t, "demo"));
                json_object_put(vms);
        }
}

/* Every listener appends "_<port>" (up to ten digits) to the path: one that leaves no room for it
 * is refused at `vm add` by its limit, not later as a bridge that cannot listen. */
static void test_vm_add_refuses_hvsock_path_without_room_for_port_suffix(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char path[128];

        /* Inside this test's own directory: the suite also runs in parallel with itself. */
        memset(path, 'x', sizeof(path));
        assert_true(strlen(t->dir) + 1 < 90);
        memcpy(path, t->dir, strlen(t->dir));
        path[strlen(t->dir)] = '/';
        path[97] = '\0'; /* 97 bytes: fits sun_path, but not with "_1073741824" */
        integ_cli(t, &res, NULL, "vm", "add", "long", "--hvsock", path, NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "at most 96 bytes");
        integ_result_done(&res);

        path[96] = '\0';
        integ_cli(t, &res, NULL, "vm", "add", "long", "--hvsock", path, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "vm", "rm", "long", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
}

static void test_exec_before_guest_connects_runs_once_it_does(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char out[INTEG_PATH_MAX], err[INTEG_PATH_MAX];
        char *args[] = { (char *)"exec",
                         (char *)"late",
                         (char *)"--timeout",
                         (char *)"60",
                         (char *)"--",
                         (char *)"sh",
                         (char *)"-c",
                         (char *)"echo late guest; exit 4",
                         NULL };
        int code;
        pid_t exec;

        integ_cli(t, &res, NULL, "vm", "add", "late", "--hvsock", integ_hvsock(t, "late"), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);

        snprintf(out, sizeof(out), "%s", integ_path(t, "exec.out"));
        snprintf(err, sizeof(err), "%s", integ_path(t, "exec.err"));
        exec = integ_spawn(t, integ_cli_argv(t, args), NULL, out, err);
        /* Start the guest only once the exec's control connection is in. */
        for (;;) {
                struct json_object *s = integ_cli_json(t, "stats", "--json", NULL);
                int64_t conns = integ_json_int(s, "control_connections");

                json_object_put(s);
                if (conns >= 2)
                        break;
                assert_true(integ_alive(t, exec));
                integ_sleep_ms(20);
        }
        integ_sim_start(t, "late");
        assert_int_equal(integ_reap(t, exec, INTEG_WAIT_MS, &code), 0);
        if (code != 4) {
                integ_dump_daemon_log(t);
                fail_msg("exec exited %d: %s", code, integ_read_file(err, NULL));
        }
        assert_true(integ_wait_file_contains(out, "late guest\n", 1));
}

static void test_exec_without_guest_times_out_clearly(void **state)
{
        struct integ *t = *state;
        struct integ_result res;

        integ_cli(t, &res, NULL, "vm", "add", "absent", "--hvsock", integ_hvsock(t, "absent"), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "exec", "absent", "--timeout", "1", "--", "true", NULL);
        integ_assert_code(t, &res, 125);
        assert_string_equal(res.out, "");
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "did not connect in time");
        integ_result_done(&res);
        /* Nothing was left behind as a process. */
        {
                struct json_object *ps = integ_cli_json(t, "ps", "absent", "--json", NULL);

                assert_int_equal(json_object_array_length(ps), 0);
                json_object_put(ps);
        }
        assert_daemon_serves(t);
}

static void test_attach_client_that_never_reads_does_not_hold_back_the_file(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *all, *p;
        char out[INTEG_PATH_MAX], attach[INTEG_PATH_MAX], script[512], pid_s[32];
        struct stat st;
        long pid;
        int slow;

        integ_vm_with_sim(t, "demo");
        snprintf(out, sizeof(out), "%s", integ_path(t, "big.out"));
        snprintf(script, sizeof(script), "%s; head -c %u /dev/zero", integ_wait_go(t), ERR_BIG_OUTPUT);
        {
                char *args[] = { (char *)"exec",
                                 (char *)"demo",
                                 (char *)"--detach",
                                 (char *)"--stdout",
                                 out,
                                 (char *)"--",
                                 (char *)"sh",
                                 (char *)"-c",
                                 script,
                                 NULL };

                integ_cliv(t, &res, NULL, args);
                integ_assert_code(t, &res, 0);
                pid = strtol(res.out, NULL, 10);
                integ_result_done(&res);
        }
        integ_attach_path(t, "demo", pid, attach, sizeof(attach));
        /* A raw attach client that connects and then never reads a byte. */
        slow = integ_connect_unix(attach, SOCK_SEQPACKET);
        integ_touch(integ_path(t, "go"));

        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "exited 0\n");
        integ_result_done(&res);

        assert_int_equal(stat(out, &st), 0);
        assert_int_equal(st.st_size, ERR_BIG_OUTPUT);
        p = integ_ps_find(t, "demo", pid, &all);
        assert_int_equal(integ_json_int(integ_json_get(p, "bytes"), "stdout"), ERR_BIG_OUTPUT);
        json_object_put(all);
        assert_true(integ_wait_file_contains(t->daemon_log, "fell behind", INTEG_WAIT_MS));
        assert_daemon_serves(t);
        close(slow);
}

static void send_all_or_reset(int fd, const void *data, size_t len)
{
        /* The daemon may close on the first bad frame: EPIPE/ECONNRESET are fine. */
        while (len > 0) {
                ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

                if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
                        return;
                assert_true(n > 0);
                data = (const uint8_t *)data + n;
                len -= (size_t)n;
        }
}

static void test_control_garbage_is_dropped_and_daemon_keeps_serving(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        uint8_t noise[4096];
        uint32_t x = 0x12345678;
        int fd;

        for (size_t i = 0; i < sizeof(noise); i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                noise[i] = (uint8_t)x;
        }
        fd = integ_connect_unix(t->sock, SOCK_STREAM);
        send_all_or_reset(fd, noise, sizeof(noise));
        integ_expect_closed(t, fd, "a garbage connection");
        close(fd);

        /* A ttrpc header announcing 4 GiB. */
        {
                static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0 };

                fd = integ_connect_unix(t->sock, SOCK_STREAM);
                send_all_or_reset(fd, huge, sizeof(huge));
                integ_expect_closed(t, fd, "a garbage connection");
                close(fd);
        }
        /* A well-sized request whose payload is not protobuf. */
        {
                uint8_t bad[10 + 32] = { 0, 0, 0, 32, 0, 0, 0, 1, 1, 0 };

                memset(bad + 10, 0xff, 32);
                fd = integ_connect_unix(t->sock, SOCK_STREAM);
                send_all_or_reset(fd, bad, sizeof(bad));
                /* Either an error response or a close is fine; the next request must work. */
                close(fd);
        }
        /* Half a header, then gone. */
        fd = integ_connect_unix(t->sock, SOCK_STREAM);
        send_all_or_reset(fd, noise, 5);
        close(fd);

        integ_cli(t, &res, NULL, "vm", "add", "after", "--hvsock", integ_hvsock(t, "after"), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "vm", "ls", NULL);
        integ_assert_code(t, &res, 0);
        integ_assert_contains(res.out, "after");
        integ_result_done(&res);
}

static void run_as_nobody(struct integ *t, struct integ_result *res)
{
        char *argv[] = { (char *)"/usr/bin/setpriv",
                         (char *)"--reuid=65534",
                         (char *)"--regid=65534",
                         (char *)"--clear-groups",
                         (char *)t->cfg->cli,
                         (char *)"--socket",
                         t->sock,
                         (char *)"vm",
                         (char *)"ls",
                         NULL };

        integ_runv(t, res, NULL, argv);
}

static void test_non_owner_peer_is_refused(void **state)
{
        struct integ *t = *state;
        struct integ_result res;

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP: needs root to run the CLI as uid 65534\n");
                skip();
        }
        if (access("/usr/bin/setpriv", X_OK) < 0) {
                fprintf(stderr, "SKIP: /usr/bin/setpriv (util-linux) is missing\n");
                skip();
        }
        /* The socket's 0600 mode stops another uid first. */
        run_as_nobody(t, &res);
        assert_int_equal(res.code, 1);
        assert_string_equal(res.out, "");
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, t->sock);
        integ_assert_contains(res.err, "Permission denied");
        integ_result_done(&res);

        /* With the mode opened up, the daemon's own SO_PEERCRED check refuses and says so. */
        assert_int_equal(chmod(t->sock, 0666), 0);
        run_as_nobody(t, &res);
        assert_int_equal(res.code, 1);
        assert_string_equal(res.out, "");
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, t->sock);
        integ_result_done(&res);
        if (!integ_wait_file_contains(t->daemon_log, "refusing connection", INTEG_WAIT_MS))
                fail_msg("vsockmuxd logged no refusal");
        assert_true(integ_wait_file_contains(t->daemon_log, "uid 65534", 1));
        assert_daemon_serves(t);
}

static void test_bridge_lost_attached_exec_exits_255(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX], err[INTEG_PATH_MAX], script[512];
        char *args[] = { (char *)"exec", (char *)"demo", (char *)"--", (char *)"sh", (char *)"-c", script, NULL };
        pid_t sim, exec;
        int code;
        char *s;

        sim = integ_vm_with_sim(t, "demo");
        snprintf(script, sizeof(script), "echo started; %s", integ_alive_loop(t));
        snprintf(out, sizeof(out), "%s", integ_path(t, "exec.out"));
        snprintf(err, sizeof(err), "%s", integ_path(t, "exec.err"));
        exec = integ_spawn(t, integ_cli_argv(t, args), NULL, out, err);
        assert_true(integ_wait_file_contains(out, "started\n", INTEG_WAIT_MS));

        integ_kill(t, sim, SIGKILL);
        assert_int_equal(integ_reap(t, exec, INTEG_WAIT_MS, &code), 0);
        s = integ_read_file(err, NULL);
        if (code != 255)
                fail_msg("attached exec exited %d after the bridge was lost, stderr '%s'", code, s);
        integ_assert_contains(s, "exit status lost");
        /* Said once: the daemon's reason starts with it already. */
        if (strstr(strstr(s, "exit status lost") + 1, "exit status lost"))
                fail_msg("'exit status lost' said twice: '%s'", s);
        free(s);
        integ_wait_bridge(t, "demo", "waiting");
}

static long start_then_lose_bridge(struct integ *t, char *pid_s, size_t len)
{
        pid_t sim = integ_vm_with_sim(t, "demo");
        long pid = integ_exec_detached(t, "demo", integ_alive_loop(t));

        snprintf(pid_s, len, "%ld", pid);
        integ_kill(t, sim, SIGKILL);
        return pid;
}

static void test_bridge_lost_wait_reports_exit_status_lost(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *all, *p, *w;
        char pid_s[32];
        long pid = start_then_lose_bridge(t, pid_s, sizeof(pid_s));

        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        assert_int_not_equal(res.code, 125);
        assert_string_equal(res.out, "exit status lost\n");
        integ_result_done(&res);

        w = integ_cli_json(t, "wait", "demo", pid_s, "--json", NULL);
        assert_string_equal(integ_json_str(integ_json_get(w, "exit"), "kind"), "lost");
        json_object_put(w);
        p = integ_ps_find(t, "demo", pid, &all);
        assert_string_equal(integ_json_str(p, "state"), "lost");
        json_object_put(all);
}

static void test_bridge_lost_wait_exits_255(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char pid_s[32];

        start_then_lose_bridge(t, pid_s, sizeof(pid_s));
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 255);
        integ_result_done(&res);
}

static void test_sigterm_stops_daemon_with_0_and_removes_its_sockets(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char attach[INTEG_PATH_MAX], bridge[INTEG_PATH_MAX];
        struct stat st;
        long pid;
        int code;

        integ_vm_with_sim(t, "demo");
        pid = integ_exec_detached(t, "demo", integ_alive_loop(t));
        integ_cli(t, &res, NULL, "exec", "demo", "--", "true", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_attach_path(t, "demo", pid, attach, sizeof(attach));
        snprintf(bridge, sizeof(bridge), "%s_%u", integ_hvsock(t, "demo"), ERR_BRIDGE_PORT);
        assert_int_equal(stat(attach, &st), 0);
        assert_int_equal(stat(bridge, &st), 0);
        assert_int_equal(stat(t->sock, &st), 0);

        assert_int_equal(kill(t->daemon, SIGTERM), 0);
        assert_int_equal(integ_reap(t, t->daemon, INTEG_WAIT_MS, &code), 0);
        t->daemon = 0;
        if (code != 0) {
                integ_dump_daemon_log(t);
                fail_msg("vsockmuxd exited %d on SIGTERM", code);
        }
        assert_int_equal(stat(t->sock, &st), -1);
        assert_int_equal(stat(attach, &st), -1);
        assert_int_equal(stat(bridge, &st), -1);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_wrong_socket_path_is_a_one_line_error),
                cmocka_unit_test(test_unknown_vm_is_named_by_every_command),
                cmocka_unit_test(test_exec_unknown_vm_exits_125_naming_it),
                cmocka_unit_test(test_usage_errors_exit_2_with_one_line),
                cmocka_unit_test(test_wait_and_attach_unknown_pid_name_it),
                cmocka_unit_test(test_vm_add_twice_fails_naming_the_vm),
                cmocka_unit_test(test_vm_add_refuses_hvsock_path_without_room_for_port_suffix),
                cmocka_unit_test(test_exec_before_guest_connects_runs_once_it_does),
                cmocka_unit_test(test_exec_without_guest_times_out_clearly),
                cmocka_unit_test(test_attach_client_that_never_reads_does_not_hold_back_the_file),
                cmocka_unit_test(test_control_garbage_is_dropped_and_daemon_keeps_serving),
                cmocka_unit_test(test_non_owner_peer_is_refused),
                cmocka_unit_test(test_bridge_lost_attached_exec_exits_255),
                cmocka_unit_test(test_bridge_lost_wait_reports_exit_status_lost),
                cmocka_unit_test(test_bridge_lost_wait_exits_255),
                cmocka_unit_test(test_sigterm_stops_daemon_with_0_and_removes_its_sockets),
        };

        return integ_run("integration-errors", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
