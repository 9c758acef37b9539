/* What holds with each guest: ours (sim default) and hcsshim's (vsockmux-sim --fidelity upstream). The
 * same tests run against both; where the guests differ, each asserts what its guest gives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

static bool upstream(struct integ *t)
{
        return t->cfg->upstream;
}

/* hcsshim's guest runs a process outside any container only for the null GUID. */
static void test_plain_exec_runs_outside_any_container(void **state)
{
        struct integ *t = *state;
        struct integ_result res;

        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", "echo hi; exit 3", NULL);
        integ_assert_code(t, &res, 3);
        assert_string_equal(res.out, "hi\n");
        assert_string_equal(res.err, "");
        integ_result_done(&res);
}

/* A process that a signal killed ended: its status is never "lost", whatever the guest reports. */
static void test_signal_death_is_never_lost(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *w, *exit;
        char pid_s[32];
        long pid;

        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", "kill -9 $$", NULL);
        /* Ours answers like a shell (137); hcsshim's guest says only "a signal" (Go's -1): 128. */
        integ_assert_code(t, &res, upstream(t) ? 128 : 137);
        assert_null(strstr(res.err, "lost"));
        integ_result_done(&res);

        pid = integ_exec_detached(t, "demo", "kill -9 $$");
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        w = integ_cli_json(t, "wait", "demo", pid_s, "--json", NULL);
        exit = integ_json_get(w, "exit");
        if (upstream(t)) {
                assert_string_equal(integ_json_str(exit, "kind"), "signaled");
                assert_int_equal(integ_json_int(exit, "signal"), 0);
                integ_assert_contains(integ_json_str(exit, "message"), "the guest did not name");
        } else {
                assert_string_equal(integ_json_str(exit, "kind"), "exited");
                assert_int_equal(integ_json_int(exit, "code"), 137);
        }
        json_object_put(w);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, upstream(t) ? 128 : 137);
        assert_string_equal(res.out, upstream(t) ? "killed by a signal the guest did not name\n" : "exited 137\n");
        integ_result_done(&res);
}

/* Inside a container both guests take the signal; the daemon names the one it delivered. */
static void test_kill_in_a_container_names_the_signal(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char pid_s[32];
        long pid;

        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "container", "create", "demo", "c1", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "exec", "demo", "--container", "c1", "--detach", "--", "sh", "-c", integ_alive_loop(t),
                  NULL);
        integ_assert_code(t, &res, 0);
        pid = strtol(res.out, NULL, 10);
        integ_result_done(&res);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "kill", "demo", pid_s, "--signal", "KILL", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 137);
        assert_string_equal(res.out, upstream(t) ? "killed by SIGKILL\n" : "exited 137\n");
        integ_result_done(&res);
}

/* hcsshim's guest signals only processes inside a container: one line says so, nothing is lost. */
static void test_kill_outside_a_container(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *all, *p;
        char pid_s[32];
        long pid;

        integ_vm_with_sim(t, "demo");
        pid = integ_exec_detached(t, "demo", integ_alive_loop(t));
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "kill", "demo", pid_s, "--signal", "KILL", NULL);
        if (!upstream(t)) {
                integ_assert_code(t, &res, 0);
                integ_result_done(&res);
                integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
                integ_assert_code(t, &res, 137);
                integ_result_done(&res);
                return;
        }
        assert_int_not_equal(res.code, 0);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "signals reach only processes inside a container with hcsshim's guest");
        integ_result_done(&res);
        /* The process runs on and the daemon still follows it. */
        p = integ_ps_find(t, "demo", pid, &all);
        assert_non_null(p);
        assert_string_equal(integ_json_str(p, "state"), "running");
        json_object_put(all);
}

/* Before a move, ps and save name the processes whose output will not follow it with this guest. */
static void test_save_names_output_that_will_not_follow(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *all, *p;
        char out[INTEG_PATH_MAX], state_file[INTEG_PATH_MAX], pid_s[32], want[64];
        bool lost = !t->cfg->resume; /* without the resume extension: hcsshim's rule */
        long pid;

        integ_vm_with_sim(t, "demo");
        snprintf(out, sizeof(out), "%s", integ_path(t, "out"));
        snprintf(state_file, sizeof(state_file), "%s", integ_path(t, "demo.state"));
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--stdout", out, "--", "sh", "-c", integ_alive_loop(t),
                  NULL);
        integ_assert_code(t, &res, 0);
        pid = strtol(res.out, NULL, 10);
        integ_result_done(&res);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        p = integ_ps_find(t, "demo", pid, &all);
        assert_non_null(p);
        assert_int_equal(json_object_object_get_ex(p, "output_lost_on_move", NULL), lost);
        json_object_put(all);

        integ_cli(t, &res, NULL, "save", "demo", "--out", state_file, NULL);
        integ_assert_code(t, &res, 0);
        snprintf(want, sizeof(want), "process %ld: its output after the save", pid);
        if (lost)
                integ_assert_contains(res.err, want);
        else
                assert_string_equal(res.err, "");
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "resume", "demo", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_plain_exec_runs_outside_any_container),
                cmocka_unit_test(test_signal_death_is_never_lost),
                cmocka_unit_test(test_kill_in_a_container_names_the_signal),
                cmocka_unit_test(test_kill_outside_a_container),
                cmocka_unit_test(test_save_names_output_that_will_not_follow),
        };

        return integ_run("integration-guest-compat", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
