/* The daemon's configurable caps: each one hit with a small value gives the client a one-line reason and a log line, and the daemon keeps serving. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

#define LIMITS_BIG_ARG 6000u           /* over a 4 KiB frame limit, far under the hard maxima */
#define LIMITS_BRIDGE_PORT 0x40000000u /* the bridge listener: <hvsock>_1073741824 */

/* Each test starts its own daemon with the limits it needs. */
struct limits {
        const struct integ_config *cfg;
        struct integ *t;
};

static int limits_setup(void **state)
{
        struct limits *l = calloc(1, sizeof(*l));

        if (!l)
                return -1;
        l->cfg = *state;
        *state = l;
        return 0;
}

static int limits_teardown(void **state)
{
        struct limits *l = *state;
        int code = l->t ? integ_free(l->t) : 0;

        free(l);
        if (code != 0) {
                fprintf(stderr, "vsockmuxd did not exit 0 on SIGTERM (got %d)\n", code);
                return -1;
        }
        return 0;
}

static struct integ *limits_start(void **state, ...)
{
        struct limits *l = *state;
        char *extra[INTEG_MAX_ARGS];
        size_t n = 0;
        va_list ap;
        int r;

        va_start(ap, state);
        for (char *a; (a = va_arg(ap, char *)) && n + 1 < INTEG_MAX_ARGS;)
                extra[n++] = a;
        va_end(ap);
        extra[n] = NULL;
        r = integ_new_args(l->cfg, extra, &l->t);
        if (r < 0)
                fail_msg("cannot start vsockmuxd: %s", strerror(-r));
        return l->t;
}

static void assert_daemon_serves(struct integ *t)
{
        struct json_object *s = integ_cli_json(t, "stats", "--json", NULL);

        assert_true(integ_json_int(s, "vms") >= 0);
        json_object_put(s);
}

static void assert_log_contains(struct integ *t, const char *needle)
{
        if (!integ_wait_file_contains(t->daemon_log, needle, INTEG_WAIT_MS)) {
                integ_dump_daemon_log(t);
                fail_msg("the daemon's log never said '%s'", needle);
        }
}

/* A one-line error with the given exit code that names the option to raise. */
static void assert_refused(struct integ *t, struct integ_result *res, int code, const char *option)
{
        integ_assert_code(t, res, code);
        integ_assert_one_line_error(res->err);
        integ_assert_contains(res->err, option);
        integ_result_done(res);
}

static void test_bad_limit_values_exit_2_naming_the_option(void **state)
{
        struct limits *l = *state;
        static const char *const bad[][2] = {
                { "--max-vms", "0" },
                { "--max-vms", "many" },
                { "--max-processes", "99999999999" },
                { "--max-streams", "-4" },
                { "--max-attach-clients", "1x" },
                { "--max-connections", "" },
                { "--max-bridge-frame", "65537" }, /* over the hard maximum, BRIDGE_MAX_FRAME */
                { "--max-bridge-frame", "100" },
                { "--max-control-frame", "5M" }, /* over CONTROL_FRAME_MAX_DATA */
                { "--stream-buffer-bytes", "1K" },
                { "--bridge-reconnect-grace", "3601" }, /* over BRIDGE_CONN_RECONNECT_GRACE_MAX_NS */
                { "--bridge-reconnect-grace", "-1" },
        };
        struct integ_result res;
        /* integ_runv needs an integ for its temp files; a daemon that never starts needs none. */
        struct integ fake = { .cfg = l->cfg };
        char dir[] = "/tmp/vsockmux-limits.XXXXXX";
        char sock[INTEG_PATH_MAX];

        assert_non_null(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/ctl.sock", dir);
        snprintf(fake.dir, sizeof(fake.dir), "%s", dir);
        snprintf(fake.daemon_log, sizeof(fake.daemon_log), "%s/none.log", dir);

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *argv[] = { (char *)l->cfg->daemon, (char *)"--socket", sock,
                                 (char *)bad[i][0],      (char *)bad[i][1],  NULL };
                const char *nl;

                integ_runv(&fake, &res, NULL, argv);
                if (res.code != 2)
                        fail_msg("%s '%s': exit %d, expected 2 (stderr '%s')", bad[i][0], bad[i][1], res.code, res.err);
                nl = strchr(res.err, '\n');
                if (strncmp(res.err, "vsockmuxd: ", 11) != 0 || !nl || nl[1])
                        fail_msg("%s '%s': not a one-line error: '%s'", bad[i][0], bad[i][1], res.err);
                integ_assert_contains(res.err, bad[i][0]);
                integ_result_done(&res);
        }
        assert_int_equal(access(sock, F_OK), -1);
        rmdir(dir);
}

static void test_help_lists_every_limit(void **state)
{
        struct limits *l = *state;
        static const char *const opts[] = {
                "--max-vms",         "--max-processes",    "--max-streams",       "--max-attach-clients",
                "--max-connections", "--max-bridge-frame", "--max-control-frame", "--stream-buffer-bytes",
        };
        struct integ *t = limits_start(state, NULL);
        char *argv[] = { (char *)l->cfg->daemon, (char *)"--help", NULL };
        struct integ_result res;

        integ_runv(t, &res, NULL, argv);
        integ_assert_code(t, &res, 0);
        for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
                integ_assert_contains(res.out, opts[i]);
        integ_result_done(&res);
}

static void test_max_vms_refuses_the_next_vm_and_keeps_serving(void **state)
{
        struct integ *t = limits_start(state, "--max-vms", "2", NULL);
        struct integ_result res;

        for (int i = 0; i < 2; i++) {
                char name[8];

                snprintf(name, sizeof(name), "vm%d", i);
                integ_cli(t, &res, NULL, "vm", "add", name, "--hvsock", integ_hvsock(t, name), NULL);
                integ_assert_code(t, &res, 0);
                integ_result_done(&res);
        }
        integ_cli(t, &res, NULL, "vm", "add", "vm2", "--hvsock", integ_hvsock(t, "vm2"), NULL);
        assert_refused(t, &res, 1, "--max-vms");
        assert_log_contains(t, "vm vm2: refused: 2 VMs, the limit");

        /* A slot freed is a slot to use again. */
        integ_cli(t, &res, NULL, "vm", "rm", "vm0", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "vm", "add", "vm2", "--hvsock", integ_hvsock(t, "vm2"), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        assert_daemon_serves(t);
}

static void test_max_processes_refuses_exec_with_125_until_one_exits(void **state)
{
        struct integ *t = limits_start(state, "--max-processes", "2", NULL);
        struct integ_result res;
        char pid_s[16];
        long pid;

        /* The one to kill runs where hcsshim's guest signals it (a container); the container
         * itself takes no process slot. */
        integ_vm_for_kills(t, "demo");
        pid = integ_exec_killable(t, "demo", NULL, integ_alive_loop(t));
        integ_exec_detached(t, "demo", integ_alive_loop(t));
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--", "true", NULL);
        assert_refused(t, &res, 125, "--max-processes");
        assert_log_contains(t, "vm demo: exec refused: 2 processes, the limit");

        /* Once one has exited and been waited for, an exec forgets it to make room. */
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "kill", "demo", pid_s, "--signal", "KILL", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 128 + 9);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", "echo room", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "room\n");
        integ_result_done(&res);
}

static void test_max_streams_refuses_exec_with_125_and_counts_stdin(void **state)
{
        struct integ *t = limits_start(state, "--max-streams", "5", NULL);
        struct integ_result res;
        char pid_s[16];
        long pid;

        integ_vm_for_kills(t, "demo");
        /* Two streams each (stdout, stderr): 4 of 5 held. */
        pid = integ_exec_killable(t, "demo", NULL, integ_alive_loop(t));
        integ_exec_detached(t, "demo", integ_alive_loop(t));
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--", "true", NULL);
        assert_refused(t, &res, 125, "--max-streams");
        assert_log_contains(t, "vm demo: exec refused: 4 streams held, limit 5");

        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "kill", "demo", pid_s, "--signal", "KILL", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 128 + 9);
        integ_result_done(&res);
        /* 2 held: stdin makes 3 more, which fits exactly. */
        integ_touch(integ_path(t, "in"));
        integ_cli(t, &res, NULL, "exec", "demo", "--stdin", integ_path(t, "in"), "--", "sh", "-c", "cat; echo fits",
                  NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "fits\n");
        integ_result_done(&res);
}

static void test_max_attach_clients_refuses_the_next_client(void **state)
{
        struct integ *t = limits_start(state, "--max-attach-clients", "1", NULL);
        struct integ_result res;
        char script[INTEG_PATH_MAX + 32], attach[INTEG_PATH_MAX], pid_s[16], buf[256];
        long pid;
        ssize_t n;
        int fd;

        integ_vm_with_sim(t, "demo");
        snprintf(script, sizeof(script), "echo ready; %s", integ_alive_loop(t));
        pid = integ_exec_detached(t, "demo", script);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);

        /* The first client is ours; the backlog's "ready" proves the daemon counted it. */
        integ_attach_path(t, "demo", pid, attach, sizeof(attach));
        fd = integ_connect_unix(attach, SOCK_SEQPACKET);
        do
                n = recv(fd, buf, sizeof(buf) - 1, 0);
        while (n > 0 && !memmem(buf, (size_t)n, "ready", 5));
        if (n <= 0)
                fail_msg("the first attach client got no backlog: %s", n < 0 ? strerror(errno) : "EOF");

        integ_cli(t, &res, NULL, "attach", "demo", pid_s, NULL);
        assert_refused(t, &res, 1, "--max-attach-clients");
        assert_log_contains(t, "attach to process");
        close(fd);
        assert_daemon_serves(t);
}

static void test_max_connections_refuses_when_all_are_busy_and_says_why(void **state)
{
        struct integ *t = limits_start(state, "--max-connections", "2", NULL);
        struct integ_result res;
        char pid_s[16], needle[128];
        pid_t waiters[2];
        long pid;

        integ_vm_with_sim(t, "demo");
        pid = integ_exec_detached(t, "demo", integ_alive_loop(t));
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        /* Two `wait`s hold both connections with a call in flight: neither is idle, so neither
         * makes way for a third. */
        for (int i = 0; i < 2; i++) {
                char *args[] = { (char *)"wait", (char *)"demo", pid_s, NULL };

                waiters[i] = integ_spawn(t, integ_cli_argv(t, args), NULL, NULL, NULL);
                snprintf(needle, sizeof(needle), "pid %d uid %u calls vsockmux.v1.Control/Wait", (int)waiters[i],
                         (unsigned)getuid());
                assert_log_contains(t, needle);
        }
        integ_cli(t, &res, NULL, "stats", NULL);
        assert_refused(t, &res, 1, "--max-connections");
        assert_log_contains(t, "all with calls in flight");

        /* One waiter gone frees its slot (the daemon sees the close a moment later). */
        integ_kill(t, waiters[0], SIGKILL);
        for (int tries = 0;; tries++) {
                integ_cli(t, &res, NULL, "stats", NULL);
                if (res.code == 0)
                        break;
                integ_assert_contains(res.err, "--max-connections");
                integ_result_done(&res);
                if (tries > 600)
                        fail_msg("the killed waiter's connection never freed its slot");
                integ_sleep_ms(100);
        }
        integ_result_done(&res);
        integ_kill(t, waiters[1], SIGKILL);
}

static void test_max_control_frame_refuses_a_larger_request_by_size(void **state)
{
        struct integ *t = limits_start(state, "--max-control-frame", "4K", NULL);
        char *big = malloc(LIMITS_BIG_ARG + 1);
        struct integ_result res;

        assert_non_null(big);
        memset(big, 'x', LIMITS_BIG_ARG);
        big[LIMITS_BIG_ARG] = '\0';
        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "exec", "demo", "--", "echo", big, NULL);
        assert_refused(t, &res, 125, "--max-control-frame");
        assert_log_contains(t, "byte limit");
        free(big);

        integ_cli(t, &res, NULL, "exec", "demo", "--", "echo", "small", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "small\n");
        integ_result_done(&res);
}

static void test_max_bridge_frame_fails_that_exec_only(void **state)
{
        struct integ *t = limits_start(state, "--max-bridge-frame", "4K", NULL);
        char *big = malloc(LIMITS_BIG_ARG + 1), *log;
        struct integ_result res;

        assert_non_null(big);
        memset(big, 'x', LIMITS_BIG_ARG);
        big[LIMITS_BIG_ARG] = '\0';
        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "exec", "demo", "--", "echo", big, NULL);
        assert_refused(t, &res, 125, "--max-bridge-frame");
        assert_log_contains(t, "over the 4096-byte bridge frame limit");
        free(big);

        /* The guest connection stayed: the next exec runs on it. */
        integ_cli(t, &res, NULL, "exec", "demo", "--", "echo", "small", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "small\n");
        integ_result_done(&res);
        log = integ_read_file(t->daemon_log, NULL);
        assert_non_null(log);
        assert_null(strstr(log, "dropping the guest connection"));
        free(log);
}

static void test_max_bridge_frame_drops_a_guest_that_sends_a_larger_one(void **state)
{
        struct integ *t = limits_start(state, "--max-bridge-frame", "4K", NULL);
        /* A response header announcing 4097 bytes: refused on the header alone. */
        static const uint8_t hdr[16] = { 0x01, 0x0b, 0x10, 0x20, 0x01, 0x10, 0, 0, 1 };
        char bridge[INTEG_PATH_MAX], buf[4096];
        struct integ_result res;
        ssize_t n;
        int fd;

        integ_cli(t, &res, NULL, "vm", "add", "demo", "--hvsock", integ_hvsock(t, "demo"), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        snprintf(bridge, sizeof(bridge), "%s_%u", integ_hvsock(t, "demo"), LIMITS_BRIDGE_PORT);
        fd = integ_connect_unix(bridge, SOCK_STREAM);
        assert_int_equal(write(fd, hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
        do
                n = read(fd, buf, sizeof(buf)); /* the daemon's NegotiateProtocol, then the end */
        while (n > 0);
        if (n < 0 && errno != ECONNRESET)
                fail_msg("the daemon kept the guest connection: %s", strerror(errno));
        close(fd);
        assert_log_contains(t, "a 4097-byte frame is over the 4096-byte bridge frame limit");

        /* The VM takes the next guest as usual. */
        integ_sim_start(t, "demo");
        integ_wait_bridge(t, "demo", "connected");
        integ_cli(t, &res, NULL, "exec", "demo", "--", "echo", "after", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "after\n");
        integ_result_done(&res);
}

static void test_stream_buffer_bytes_rounds_up_to_whole_buffers(void **state)
{
        struct integ *t = limits_start(state, "--stream-buffer-bytes", "200K", NULL);
        struct integ_result res;

        /* 200 KiB in 64 KiB buffers: 4 of them. relay's tests hold it to that bound. */
        assert_log_contains(t, "262144 bytes buffered per stream");
        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", "head -c 1000000 /dev/zero | wc -c", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "1000000\n");
        integ_result_done(&res);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bad_limit_values_exit_2_naming_the_option),
                cmocka_unit_test(test_help_lists_every_limit),
                cmocka_unit_test(test_max_vms_refuses_the_next_vm_and_keeps_serving),
                cmocka_unit_test(test_max_processes_refuses_exec_with_125_until_one_exits),
                cmocka_unit_test(test_max_streams_refuses_exec_with_125_and_counts_stdin),
                cmocka_unit_test(test_max_attach_clients_refuses_the_next_client),
                cmocka_unit_test(test_max_connections_refuses_when_all_are_busy_and_says_why),
                cmocka_unit_test(test_max_control_frame_refuses_a_larger_request_by_size),
                cmocka_unit_test(test_max_bridge_frame_fails_that_exec_only),
                cmocka_unit_test(test_max_bridge_frame_drops_a_guest_that_sends_a_larger_one),
                cmocka_unit_test(test_stream_buffer_bytes_rounds_up_to_whole_buffers),
        };
        for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
                tests[i].setup_func = limits_setup;
                tests[i].teardown_func = limits_teardown;
        }
        return integ_run("integration-limits", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
