/* Migrate over the control API where no libvirt is needed: what the daemon and its
 * vsockmux-vmhelper refuse before libvirt is asked anything, who may call it, and a helper that
 * cannot start. The migrations themselves, and a helper killed in one, are tests/vm's (real
 * libvirtd). */
#include <errno.h>
#include <setjmp.h>
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

static char helper_path[INTEG_PATH_MAX];

/* Each test starts its own daemon, with the options it needs. */
struct mig {
        const struct integ_config *cfg;
        struct integ *t;
};

static int mig_setup(void **state)
{
        struct mig *m = calloc(1, sizeof(*m));

        if (!m)
                return -1;
        m->cfg = *state;
        *state = m;
        return 0;
}

/* The daemon must stop cleanly (exit 0 on SIGTERM) whatever the migrations did. */
static int mig_teardown(void **state)
{
        struct mig *m = *state;
        int code = m->t ? integ_free(m->t) : 0;

        free(m);
        return code == 0 ? 0 : -1;
}

static struct integ *start(void **state, const char *helper, const char *opt, const char *arg)
{
        struct mig *m = *state;
        char *extra[] = { (char *)"--vm-helper", (char *)helper, (char *)opt, (char *)arg, NULL };
        int r = integ_new_args(m->cfg, extra, &m->t);

        if (r < 0)
                fail_msg("cannot start vsockmuxd: %s", strerror(-r));
        return m->t;
}

/* The VM is as it was: connected, its process relaying, not migrating. */
static void expect_untouched(struct integ *t, long pid)
{
        struct json_object *all = NULL, *p = integ_ps_find(t, "demo", pid, &all);

        assert_non_null(p);
        assert_string_equal(integ_json_str(p, "state"), "running");
        json_object_put(all);
        integ_wait_bridge(t, "demo", "connected");
}

static void test_migrate_refuses_a_bad_option_by_name_and_changes_nothing(void **state)
{
        struct integ *t = start(state, helper_path, NULL, NULL);
        const char *dst = integ_path(t, "b.sock");
        static const char *const bad[][3] = {
                { "--parallel", "many", "parallel_connections" },
                { "--parallel", "256", "parallel_connections" },
                { "--downtime", "3000000", "max_downtime_ms" },
                { "--xbzrle-cache", "4096", "needs compression xbzrle" },
        };
        long pid;

        integ_vm_with_sim(t, "demo");
        pid = integ_exec_detached(t, "demo", "while :; do echo x; sleep 0.1; done");
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct integ_result res;

                integ_cli(t, &res, NULL, "migrate", "demo", "--to", "qemu:///session", "--dest-socket", dst, bad[i][0],
                          bad[i][1], NULL);
                /* The daemon judges the values: its refusal, not a usage error. */
                integ_assert_code(t, &res, 1);
                integ_assert_contains(res.err, bad[i][2]);
                integ_assert_contains(res.err, "INVALID_ARGUMENT");
                if (strstr(res.err, "rolled back"))
                        fail_msg("a refused option claims a rollback: %s", res.err);
                integ_result_done(&res);
        }
        expect_untouched(t, pid);
}

static void test_migrate_to_an_unreachable_destination_fails_rolled_back(void **state)
{
        struct integ *t = start(state, helper_path, NULL, NULL);
        struct integ_result res;
        long pid;

        integ_vm_with_sim(t, "demo");
        pid = integ_exec_detached(t, "demo", "while :; do echo x; sleep 0.1; done");
        integ_cli(t, &res, NULL, "migrate", "demo", "--to", "qemu:///session", "--dest-socket",
                  integ_path(t, "nobody-listens.sock"), "--json", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "cannot reach the destination vsockmuxd");
        integ_assert_contains(res.err, "rolled back: the VM stays on the source (ABORTED)");
        integ_assert_contains(res.out, "\"event\":\"failed\"");
        integ_assert_contains(res.out, "\"rolled_back\":true");
        integ_result_done(&res);
        expect_untouched(t, pid);
}

/* --io names its process by pid ("PID:") or by exec id; one the VM does not hold is refused by
 * name before the helper starts (the destination's Restore would refuse it only after the source
 * paused and saved). One it holds passes, and the migration fails where it would without --io. */
static void test_migrate_io_naming_no_process_is_refused_by_name(void **state)
{
        struct integ *t = start(state, helper_path, NULL, NULL);
        const char *nowhere = integ_path(t, "nobody-listens.sock");
        const char *out = integ_path(t, "out-b");
        char held[INTEG_PATH_MAX + 32], stray[INTEG_PATH_MAX + 32], want[64];
        struct integ_result res;
        long pid, nopid = 999999;

        integ_vm_with_sim(t, "demo");
        pid = integ_exec_detached(t, "demo", "while :; do echo x; sleep 0.1; done");
        assert_int_not_equal(pid, nopid);
        snprintf(held, sizeof(held), "%ld:stdout=%s", pid, out);
        snprintf(stray, sizeof(stray), "%ld:stdout=%s", nopid, out);
        snprintf(want, sizeof(want), "--io names pid %ld, which VM demo does not hold", nopid);
        integ_cli(t, &res, NULL, "migrate", "demo", "--to", "qemu:///session", "--dest-socket", nowhere, "--io", held,
                  "--io", stray, NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, want);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "migrate", "demo", "--to", "qemu:///session", "--dest-socket", nowhere, "--io",
                  "exec=never-was:stdout=/dev/null", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "--io names exec never-was, which VM demo does not hold");
        integ_result_done(&res);
        if (access(out, F_OK) == 0)
                fail_msg("a refused --io opened %s", out);
        /* The held pid alone passes the check: the helper runs, and finds no destination. */
        integ_cli(t, &res, NULL, "migrate", "demo", "--to", "qemu:///session", "--dest-socket", nowhere, "--io", held,
                  NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "cannot reach the destination vsockmuxd");
        integ_assert_contains(res.err, "rolled back");
        integ_result_done(&res);
        expect_untouched(t, pid);
}

static void test_migrate_without_its_helper_program_fails_and_the_daemon_serves_on(void **state)
{
        struct integ *t = start(state, "/nonexistent/vsockmux-vmhelper", NULL, NULL);
        struct integ_result res;
        long pid;

        integ_vm_with_sim(t, "demo");
        pid = integ_exec_detached(t, "demo", "echo hi; sleep 600");
        integ_cli(t, &res, NULL, "migrate", "demo", "--to", "qemu:///session", "--dest-socket", integ_path(t, "b.sock"),
                  NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "cannot start /nonexistent/vsockmux-vmhelper");
        integ_assert_contains(res.err, "(UNAVAILABLE)");
        integ_result_done(&res);
        expect_untouched(t, pid);
}

static void test_migrate_by_a_group_member_is_permission_denied(void **state)
{
        struct integ *t;
        struct integ_result res;

        if (geteuid() != 0 || access(INTEG_SETPRIV, X_OK) != 0)
                skip();
        t = start(state, helper_path, "--group", INTEG_NOBODY);
        integ_vm_with_sim(t, "demo");
        integ_cli_as_nobody(t, &res, NULL, "migrate", "demo", "--to", "qemu:///system", "--dest-socket",
                            integ_path(t, "b.sock"), NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "only root and the daemon's owner may call it (PERMISSION_DENIED)");
        integ_result_done(&res);
        integ_wait_bridge(t, "demo", "connected");
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_migrate_refuses_a_bad_option_by_name_and_changes_nothing,
                                                mig_setup, mig_teardown),
                cmocka_unit_test_setup_teardown(test_migrate_to_an_unreachable_destination_fails_rolled_back, mig_setup,
                                                mig_teardown),
                cmocka_unit_test_setup_teardown(test_migrate_io_naming_no_process_is_refused_by_name, mig_setup,
                                                mig_teardown),
                cmocka_unit_test_setup_teardown(test_migrate_without_its_helper_program_fails_and_the_daemon_serves_on,
                                                mig_setup, mig_teardown),
                cmocka_unit_test_setup_teardown(test_migrate_by_a_group_member_is_permission_denied, mig_setup,
                                                mig_teardown),
        };
        const char *root = getenv("VSOCKMUX_BUILD_ROOT");

        snprintf(helper_path, sizeof(helper_path), "%s/vm/vsockmux-vmhelper", root ? root : ".");
        return integ_run("integration-migrate", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
