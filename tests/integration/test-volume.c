/* Volume and concurrency through the whole chain: every byte and every exit code reaches the right CLI. */
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

#define VOL_SEQ_LINES 1000000 /* `seq 1 1000000`: 6888896 bytes */
#define VOL_CONCURRENT 12

/* What `seq 1 n` prints. */
static char *seq_text(unsigned n, size_t *ret_len)
{
        size_t cap = (size_t)n * 8 + 1, len = 0;
        char *s = malloc(cap);

        assert_non_null(s);
        for (unsigned i = 1; i <= n; i++)
                len += (size_t)snprintf(s + len, cap - len, "%u\n", i);
        *ret_len = len;
        return s;
}

static void test_large_output_through_attached_exec_is_exact(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char script[128];
        size_t len;
        char *want = seq_text(VOL_SEQ_LINES, &len);

        integ_vm_with_sim(t, "demo");
        snprintf(script, sizeof(script), "seq 1 %u; seq 1 1000 >&2", VOL_SEQ_LINES);
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", script, NULL);
        integ_assert_code(t, &res, 0);
        assert_int_equal(strlen(res.out), len);
        assert_memory_equal(res.out, want, len);
        assert_int_equal(strlen(res.err), 3893);
        integ_result_done(&res);
        free(want);
}

static void test_concurrent_attached_execs_keep_output_and_codes_apart(void **state)
{
        struct integ *t = *state;
        pid_t cli[VOL_CONCURRENT];
        char out[VOL_CONCURRENT][INTEG_PATH_MAX], err[VOL_CONCURRENT][INTEG_PATH_MAX];
        char script[VOL_CONCURRENT][256];

        integ_vm_with_sim(t, "demo");
        for (int k = 0; k < VOL_CONCURRENT; k++) {
                char name[32];
                char *args[] = { (char *)"exec", (char *)"demo", (char *)"--", (char *)"sh",
                                 (char *)"-c",   script[k],      NULL };

                /* Each process's output is distinct: "k:1" .. "k:N" with N depending on k. */
                snprintf(script[k], sizeof(script[k]), "seq 1 %d | sed 's/^/%d:/'; echo err%d >&2; exit %d",
                         2000 * (k + 1), k, k, 10 + k);
                snprintf(name, sizeof(name), "c%d.out", k);
                snprintf(out[k], sizeof(out[k]), "%s", integ_path(t, name));
                snprintf(name, sizeof(name), "c%d.err", k);
                snprintf(err[k], sizeof(err[k]), "%s", integ_path(t, name));
                cli[k] = integ_spawn(t, integ_cli_argv(t, args), NULL, out[k], err[k]);
        }
        for (int k = 0; k < VOL_CONCURRENT; k++) {
                int code, lines = 2000 * (k + 1);
                size_t len = 0, at = 0;
                char *s, *e, line[32];

                assert_int_equal(integ_reap(t, cli[k], INTEG_WAIT_MS, &code), 0);
                s = integ_read_file(out[k], &len);
                e = integ_read_file(err[k], NULL);
                assert_non_null(s);
                assert_non_null(e);
                if (code != 10 + k) {
                        integ_dump_daemon_log(t);
                        fail_msg("exec %d exited %d, stderr '%s'", k, code, e);
                }
                snprintf(line, sizeof(line), "err%d\n", k);
                assert_string_equal(e, line);
                for (int i = 1; i <= lines; i++) {
                        int n = snprintf(line, sizeof(line), "%d:%d\n", k, i);

                        if (at + (size_t)n > len || memcmp(s + at, line, (size_t)n) != 0)
                                fail_msg("exec %d: line %d wrong or missing at byte %zu of %zu", k, i, at, len);
                        at += (size_t)n;
                }
                assert_int_equal(at, len);
                free(s);
                free(e);
        }
        /* All were counted and none is left running. */
        {
                struct json_object *ps = integ_cli_json(t, "ps", "demo", "--json", NULL);

                assert_int_equal(json_object_array_length(ps), VOL_CONCURRENT);
                for (size_t i = 0; i < VOL_CONCURRENT; i++)
                        assert_string_equal(integ_json_str(json_object_array_get_idx(ps, i), "state"), "exited");
                json_object_put(ps);
        }
}

static void test_exec_detach_json_prints_the_pid(void **state)
{
        struct integ *t = *state;
        struct json_object *o, *all, *p;
        long pid;

        integ_vm_with_sim(t, "demo");
        o = integ_cli_json(t, "exec", "demo", "--detach", "--json", "--", "sh", "-c", "exit 0", NULL);
        pid = (long)integ_json_int(o, "pid");
        assert_true(pid > 0);
        json_object_put(o);
        p = integ_ps_find(t, "demo", pid, &all);
        assert_string_equal(json_object_get_string(json_object_array_get_idx(integ_json_get(p, "argv"), 2)), "exit 0");
        json_object_put(all);
}

static void test_vm_rm_with_a_running_process_then_add_again(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        pid_t sim;

        sim = integ_vm_with_sim(t, "demo");
        integ_exec_detached(t, "demo", integ_alive_loop(t));
        integ_cli(t, &res, NULL, "vm", "rm", "demo", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "ps", "demo", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "unknown VM 'demo'");
        integ_result_done(&res);

        /* A new guest on the same path. The old one must go first: it would keep redialling its
         * old stdio ports, which the re-added VM hands out again from the start. */
        integ_kill(t, sim, SIGTERM);
        integ_cli(t, &res, NULL, "vm", "add", "demo", "--hvsock", integ_hvsock(t, "demo"), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_sim_start(t, "demo");
        integ_wait_bridge(t, "demo", "connected");
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", "echo again", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "again\n");
        integ_result_done(&res);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_large_output_through_attached_exec_is_exact),
                cmocka_unit_test(test_concurrent_attached_execs_keep_output_and_codes_apart),
                cmocka_unit_test(test_exec_detach_json_prints_the_pid),
                cmocka_unit_test(test_vm_rm_with_a_running_process_then_add_again),
        };

        return integ_run("integration-volume", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
