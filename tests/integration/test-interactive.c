/* Interactive stdio against a real vsockmuxd and a simulated guest: signals an attached exec
 * forwards, terminals, stdin from attach clients. Each CLI is its own process, driven as a user
 * would (signals to it, a pty around it). */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

/* Starts `vsockmux exec demo [opt] -- sh -c SCRIPT` attached, output to files; waits for "ready". */
static pid_t spawn_attached(struct integ *t, const char *opt, const char *script, char *out, char *err)
{
        char *with_opt[] = { (char *)"exec", (char *)"demo", (char *)opt, (char *)"--", (char *)"sh",
                             (char *)"-c", (char *)script, NULL };
        char *plain[] = { (char *)"exec", (char *)"demo", (char *)"--", (char *)"sh", (char *)"-c",
                          (char *)script, NULL };
        pid_t pid;

        snprintf(out, INTEG_PATH_MAX, "%s", integ_path(t, "cli.out"));
        snprintf(err, INTEG_PATH_MAX, "%s", integ_path(t, "cli.err"));
        pid = integ_spawn(t, integ_cli_argv(t, opt ? with_opt : plain), NULL, out, err);
        assert_true(pid > 0);
        if (!integ_wait_file_contains(out, "ready\n", INTEG_WAIT_MS)) {
                integ_dump_daemon_log(t);
                fail_msg("the process never said ready");
        }
        return pid;
}

static void test_exec_forwards_signals_the_process_traps(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX], err[INTEG_PATH_MAX], script[512];
        char *text;
        pid_t cli;
        int code;

        integ_vm_with_sim(t, "demo");
        /* Each trap fires once the loop's sleep ends; the process keeps running after USR1/HUP. */
        snprintf(script, sizeof(script),
                 "trap 'echo got USR1' USR1; trap 'echo got HUP' HUP; trap 'echo got INT; exit 9' INT; "
                 "echo ready; %s", integ_alive_loop(t));
        cli = spawn_attached(t, NULL, script, out, err);

        assert_int_equal(kill(cli, SIGUSR1), 0);
        assert_true(integ_wait_file_contains(out, "got USR1\n", INTEG_WAIT_MS));
        assert_int_equal(kill(cli, SIGHUP), 0);
        assert_true(integ_wait_file_contains(out, "got HUP\n", INTEG_WAIT_MS));
        assert_true(integ_alive(t, cli));
        assert_int_equal(kill(cli, SIGINT), 0);
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        /* The process's own exit code: it decided what SIGINT means. */
        assert_int_equal(code, 9);
        text = integ_read_file(out, NULL);
        assert_string_equal(text, "ready\ngot USR1\ngot HUP\ngot INT\n");
        free(text);
        text = integ_read_file(err, NULL);
        assert_string_equal(text, "");
        free(text);
}

static void test_exec_ctrl_c_that_ends_the_process_exits_130(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX], err[INTEG_PATH_MAX], script[512];
        char *text;
        pid_t cli;
        int code;

        integ_vm_with_sim(t, "demo");
        snprintf(script, sizeof(script), "echo ready; %s", integ_alive_loop(t));
        cli = spawn_attached(t, NULL, script, out, err);
        assert_int_equal(kill(cli, SIGINT), 0);
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 130);
        /* It ended the way a local Ctrl-C ends it: no "may still run". */
        text = integ_read_file(err, NULL);
        assert_string_equal(text, "");
        free(text);

        /* SIGTERM the same way: 143. */
        cli = spawn_attached(t, NULL, script, out, err);
        assert_int_equal(kill(cli, SIGTERM), 0);
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 143);
}

static void test_exec_sig_proxy_false_leaves_the_process_running(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX], err[INTEG_PATH_MAX], script[512];
        struct json_object *procs;
        struct integ_result res;
        char *text;
        pid_t cli;
        int code;

        integ_vm_with_sim(t, "demo");
        snprintf(script, sizeof(script), "trap 'echo got INT; exit 9' INT; echo ready; %s", integ_wait_go(t));
        cli = spawn_attached(t, "--sig-proxy=false", script, out, err);
        assert_int_equal(kill(cli, SIGINT), 0);
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 130);
        text = integ_read_file(err, NULL);
        integ_assert_contains(text, "may still run");
        free(text);

        /* The process never saw it: it still runs, and ends as it would have. */
        procs = integ_cli_json(t, "ps", "demo", "--json", NULL);
        assert_int_equal(json_object_array_length(procs), 1);
        assert_string_equal(integ_json_str(json_object_array_get_idx(procs, 0), "state"), "running");
        {
                char pid_s[32];

                snprintf(pid_s, sizeof(pid_s), "%" PRId64, integ_json_int(json_object_array_get_idx(procs, 0), "pid"));
                integ_touch(integ_path(t, "go"));
                integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
                integ_assert_code(t, &res, 0);
                integ_result_done(&res);
        }
        json_object_put(procs);
        text = integ_read_file(out, NULL);
        assert_string_equal(text, "ready\n");
        free(text);

        integ_cli(t, &res, NULL, "exec", "demo", "--sig-proxy=maybe", "--", "true", NULL);
        integ_assert_code(t, &res, 2);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "--sig-proxy wants true or false, got 'maybe'");
        integ_result_done(&res);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_exec_forwards_signals_the_process_traps),
                cmocka_unit_test(test_exec_ctrl_c_that_ends_the_process_exits_130),
                cmocka_unit_test(test_exec_sig_proxy_false_leaves_the_process_running),
        };

        return integ_run("integration-interactive", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
