/* A state blob an older schema wrote (tests/fixtures/, README there) restored by today's daemon:
 * its VM, container, exec ids and reported exit come back, and the processes the new guest does
 * not know end as "exit status lost" once it has connected, never as an exit code. */
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

/* The blob tests/fixtures/make-state.sh wrote with schema version 1 (README names the commit). */
static void fixture_path(char *buf, size_t len)
{
        const char *root = getenv("VSOCKMUX_SOURCE_ROOT");

        if (!root)
                fail_msg("VSOCKMUX_SOURCE_ROOT is not set (meson sets it)");
        snprintf(buf, len, "%s/tests/fixtures/state-v1.bin", root);
}

static struct json_object *find_id(struct json_object *all, const char *id)
{
        for (size_t i = 0; i < json_object_array_length(all); i++) {
                struct json_object *p = json_object_array_get_idx(all, i);

                if (strcmp(integ_json_str(p, "id"), id) == 0)
                        return p;
        }
        fail_msg("no process with exec id '%s' after the restore", id);
        return NULL;
}

/* The exit kind of exec id in ps, polled until it is not "running". */
static char *wait_exit_kind(struct integ *t, const char *id)
{
        for (int waited = 0; waited < INTEG_WAIT_MS; waited += 50) {
                struct json_object *all = integ_cli_json(t, "ps", "fixture", "--json", NULL);
                struct json_object *exit = integ_json_get(find_id(all, id), "exit");
                char *kind = exit ? strdup(integ_json_str(exit, "kind")) : NULL;

                json_object_put(all);
                if (kind)
                        return kind;
                integ_sleep_ms(50);
        }
        integ_dump_daemon_log(t);
        fail_msg("process '%s' still has no exit", id);
        return NULL;
}

static void test_schema_v1_blob_restores_with_its_records(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char blob[INTEG_PATH_MAX];
        struct json_object *all, *p, *vms;
        char *kind;

        fixture_path(blob, sizeof(blob));
        integ_cli(t, &res, NULL, "restore", "--in", blob, "--hvsock", integ_hvsock(t, "fixture"), NULL);
        integ_assert_code(t, &res, 0);
        integ_assert_contains(res.out, "restored fixture: 3 processes");
        integ_result_done(&res);

        /* Before any guest: the records as saved. */
        all = integ_cli_json(t, "ps", "fixture", "--json", NULL);
        assert_int_equal(json_object_array_length(all), 3);
        p = find_id(all, "in-container");
        assert_string_equal(integ_json_str(p, "container"), "c1");
        assert_string_equal(integ_json_str(p, "state"), "running");
        p = find_id(all, "exited-3");
        assert_string_equal(integ_json_str(p, "state"), "exited");
        assert_int_equal(integ_json_int(integ_json_get(p, "exit"), "code"), 3);
        assert_int_equal(integ_json_int(integ_json_get(p, "bytes"), "stdout"), 5); /* "done\n" */
        json_object_put(all);

        integ_cli(t, &res, NULL, "wait", "fixture", "exited-3", NULL);
        integ_assert_code(t, &res, 3);
        integ_result_done(&res);

        /* A new guest that never ran them: each running one ends lost (255), never with a code. */
        integ_sim_start(t, "fixture");
        integ_wait_bridge(t, "fixture", "connected");
        vms = integ_cli_json(t, "vm", "ls", "--json", NULL);
        assert_int_equal(json_object_array_length(vms), 1);
        json_object_put(vms);
        kind = wait_exit_kind(t, "in-container");
        assert_string_equal(kind, "lost");
        free(kind);
        integ_cli(t, &res, NULL, "wait", "fixture", "in-container", NULL);
        integ_assert_code(t, &res, 255);
        assert_string_equal(res.out, "exit status lost\n");
        integ_result_done(&res);
}

/* The fixture cut short: refused by name, said once (not "restore: restore:"), no VM made. */
static void test_truncated_blob_is_refused_once_by_name(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char blob[INTEG_PATH_MAX];
        const char *cut = integ_path(t, "cut.bin");
        char buf[16];
        FILE *in, *out;

        fixture_path(blob, sizeof(blob));
        in = fopen(blob, "rb");
        out = fopen(cut, "wb");
        assert_non_null(in);
        assert_non_null(out);
        assert_int_equal(fread(buf, 1, sizeof(buf), in), sizeof(buf));
        assert_int_equal(fwrite(buf, 1, sizeof(buf), out), sizeof(buf));
        fclose(in);
        fclose(out);
        integ_cli(t, &res, NULL, "restore", "cut", "--in", cut, "--hvsock", integ_hvsock(t, "cut"), NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "vsockmux: restore: saved state truncated");
        assert_null(strstr(res.err, "restore: restore:"));
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "vm", "ls", NULL);
        integ_assert_code(t, &res, 0);
        assert_null(strstr(res.out, "cut"));
        integ_result_done(&res);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_schema_v1_blob_restores_with_its_records),
                cmocka_unit_test(test_truncated_blob_is_refused_once_by_name),
        };

        return integ_run("integration-state-fixture", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
