/* Least privilege: a control client reaches only what it could reach itself (endpoints open with its rights), --read-group may list and watch but not act (clients as uid 65534 through setpriv), and hybrid-vsock paths stay where they were confined. */
#include <errno.h>
#include <signal.h>
#include <setjmp.h>
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

#define SECRET "root only\n"
#define ARRAY_N(x) (sizeof(x) / sizeof((x)[0]))

struct priv {
        const struct integ_config *cfg;
        struct integ *t;
        char nobody_dir[INTEG_PATH_MAX]; /* owned by 65534: where it may write */
};

static int priv_setup(void **state)
{
        struct priv *p = calloc(1, sizeof(*p));

        if (!p)
                return -1;
        p->cfg = *state;
        *state = p;
        return 0;
}

static int priv_teardown(void **state)
{
        struct priv *p = *state;
        int code = p->t ? integ_free(p->t) : 0;

        free(p);
        return code == 0 ? 0 : -1;
}

static struct integ *priv_start(struct priv *p, const char *opt)
{
        char *extra[] = { (char *)opt, (char *)INTEG_NOBODY, NULL };
        int r = integ_new_args(p->cfg, extra, &p->t);

        if (r < 0)
                fail_msg("cannot start vsockmuxd %s %s: %s", opt, INTEG_NOBODY, strerror(-r));
        snprintf(p->nobody_dir, sizeof(p->nobody_dir), "%s", integ_path(p->t, "nobody"));
        assert_int_equal(mkdir(p->nobody_dir, 0755), 0);
        assert_int_equal(chown(p->nobody_dir, 65534, 65534), 0);
        return p->t;
}

static void write_root_file(const char *path, mode_t mode)
{
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        assert_int_equal(fputs(SECRET, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(chmod(path, mode), 0);
}

static void assert_refused_naming(struct integ_result *res, const char *path)
{
        assert_int_not_equal(res->code, 0);
        integ_assert_contains(res->err, path);
        integ_assert_contains(res->err, "Permission denied");
}

static void test_endpoints_open_with_the_callers_rights(void **state)
{
        struct priv *p = *state;
        struct integ *t = priv_start(p, "--group");
        char out[INTEG_PATH_MAX], secret[INTEG_PATH_MAX], rootlog[INTEG_PATH_MAX];
        struct integ_result res;
        char *s;

        integ_vm_with_sim(t, "demo");
        snprintf(secret, sizeof(secret), "%s", integ_path(t, "secret"));
        snprintf(rootlog, sizeof(rootlog), "%s", integ_path(t, "root.log"));
        snprintf(out, sizeof(out), "%s", integ_path(t, "nobody/out"));
        write_root_file(secret, 0600);
        write_root_file(rootlog, 0644);

        /* A 0600 root file and /etc/shadow are not readable through the daemon. */
        integ_cli_as_nobody(t, &res, NULL, "exec", "demo", "--detach", "--stdin", secret, "--stdout", out, "--", "cat",
                            NULL);
        assert_refused_naming(&res, secret);
        integ_result_done(&res);
        integ_cli_as_nobody(t, &res, NULL, "exec", "demo", "--detach", "--stdin", "/etc/shadow", "--stdout", out, "--",
                            "cat", NULL);
        assert_refused_naming(&res, "/etc/shadow");
        integ_result_done(&res);
        /* A root-owned file is not appended to, and nothing is created where the caller cannot write. */
        integ_cli_as_nobody(t, &res, NULL, "exec", "demo", "--detach", "--stdout", rootlog, "--", "echo", "owned",
                            NULL);
        assert_refused_naming(&res, rootlog);
        integ_result_done(&res);
        s = integ_read_file(rootlog, NULL);
        assert_string_equal(s, SECRET);
        free(s);
        integ_cli_as_nobody(t, &res, NULL, "exec", "demo", "--detach", "--stdout", integ_path(t, "new.log"), "--",
                            "true", NULL);
        assert_refused_naming(&res, "new.log");
        integ_result_done(&res);
        assert_int_equal(access(integ_path(t, "new.log"), F_OK), -1);

        /* What the caller may reach works: its own directory, a file it created. */
        integ_cli_as_nobody(t, &res, NULL, "exec", "demo", "--stdout", out, "--", "echo", "mine", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        s = integ_read_file(out, NULL);
        assert_string_equal(s, "mine\n");
        free(s);

        /* Root keeps working, and the thread that opened as 65534 got root's rights back. */
        integ_cli(t, &res, NULL, "exec", "demo", "--stdin", secret, "--", "cat", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, SECRET);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "exec", "demo", "--stdout", rootlog, "--", "echo", "root", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        s = integ_read_file(rootlog, NULL);
        assert_string_equal(s, SECRET "root\n");
        free(s);
}

static void test_read_group_may_list_and_wait_but_not_act(void **state)
{
        struct priv *p = *state;
        struct integ *t = priv_start(p, "--read-group");
        static const char *const refused[][6] = {
                { "Exec", "exec", "demo", "--", "true", NULL },
                { "Kill", "kill", "demo", "1", NULL },
                { "VmAdd", "vm", "add", "other", "--cid", "7" },
                { "VmRemove", "vm", "rm", "demo", NULL },
                { "Resume", "resume", "demo", NULL },
        };
        struct integ_result res;
        struct stat st;

        integ_vm_with_sim(t, "demo");
        /* One file, one group: the read group's, 0660. */
        assert_int_equal(stat(t->sock, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0660);
        assert_int_equal(st.st_gid, 65534);

        integ_cli_as_nobody(t, &res, NULL, "vm", "ls", NULL);
        integ_assert_code(t, &res, 0);
        integ_assert_contains(res.out, "demo");
        integ_result_done(&res);
        integ_cli_as_nobody(t, &res, NULL, "ps", "demo", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli_as_nobody(t, &res, NULL, "stats", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        /* Wait passes the gate: the answer is about the pid, not about permission. */
        integ_cli_as_nobody(t, &res, NULL, "wait", "demo", "4242", NULL);
        assert_int_not_equal(res.code, 0);
        assert_null(strstr(res.err, "ermission"));
        integ_result_done(&res);

        for (size_t i = 0; i < ARRAY_N(refused); i++) {
                char name[64];

                integ_cli_as_nobody(t, &res, NULL, refused[i][1], refused[i][2], refused[i][3], refused[i][4],
                                    refused[i][5], NULL);
                snprintf(name, sizeof(name), "/%s ", refused[i][0]);
                assert_int_not_equal(res.code, 0);
                integ_assert_contains(res.err, "permission denied");
                integ_assert_contains(res.err, name);
                integ_result_done(&res);
        }
        assert_true(integ_wait_file_contains(t->daemon_log, "(read group) may not call", INTEG_WAIT_MS));
        /* Root still acts. */
        integ_cli(t, &res, NULL, "exec", "demo", "--", "echo", "ok", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "ok\n");
        integ_result_done(&res);
}

/* Restore opens its --io endpoints with the caller's rights too. */
static void test_restore_endpoints_open_with_the_callers_rights(void **state)
{
        struct priv *p = *state;
        struct integ *t = priv_start(p, "--group");
        char blob[INTEG_PATH_MAX], rootlog[INTEG_PATH_MAX], io[2 * INTEG_PATH_MAX], sock[INTEG_PATH_MAX],
                sdir[INTEG_PATH_MAX], log[INTEG_PATH_MAX];
        char *daemon[] = { (char *)t->cfg->daemon,
                           (char *)"--socket",
                           sock,
                           (char *)"--state-dir",
                           sdir,
                           (char *)"--hvsock-root",
                           t->dir,
                           (char *)"--group",
                           (char *)INTEG_NOBODY,
                           NULL };
        struct integ_result res = { 0 };
        pid_t dpid;
        long pid;
        int code;

        snprintf(blob, sizeof(blob), "%s", integ_path(t, "demo.state"));
        snprintf(rootlog, sizeof(rootlog), "%s", integ_path(t, "root.log"));
        snprintf(sock, sizeof(sock), "%s", integ_path(t, "b.sock"));
        snprintf(sdir, sizeof(sdir), "%s", integ_path(t, "b-state"));
        snprintf(log, sizeof(log), "%s", integ_path(t, "b.log"));
        write_root_file(rootlog, 0644);
        integ_vm_with_sim(t, "demo");
        pid = integ_exec_detached(t, "demo", integ_alive_loop(t));
        integ_cli(t, &res, NULL, "save", "demo", "--out", blob, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        assert_int_equal(chmod(blob, 0644), 0);

        dpid = integ_spawn(t, daemon, NULL, log, log);
        for (int tries = 0;; tries++) {
                char *argv[] = { (char *)t->cfg->cli, (char *)"--socket", sock, (char *)"vm", (char *)"ls", NULL };

                integ_runv(t, &res, NULL, argv);
                code = res.code;
                integ_result_done(&res);
                if (code == 0)
                        break;
                if (tries > 200)
                        fail_msg("the second vsockmuxd never served %s", sock);
                integ_sleep_ms(25);
        }
        snprintf(io, sizeof(io), "%ld:stdout=%s", pid, rootlog);
        {
                integ_cli_as_nobody(t, &res, sock, "restore", "--in", blob, "--io", io, NULL);
                assert_refused_naming(&res, rootlog);
                integ_result_done(&res);
        }
        {
                char *s = integ_read_file(rootlog, NULL);

                assert_string_equal(s, SECRET);
                free(s);
        }
        assert_int_equal(kill(dpid, SIGTERM), 0);
        assert_int_equal(integ_reap(t, dpid, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
        /* Nothing was taken over: the source can still roll back. */
        integ_cli(t, &res, NULL, "resume", "demo", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
}

/* The VM's directory swapped for a symlink after `vm add`: the daemon's unlink at `vm rm` goes
 * through the directory it opened at add, not through the symlink. */
static void test_hvsock_directory_swapped_for_a_symlink_is_not_followed(void **state)
{
        struct integ *t = *state;
        char vms[INTEG_PATH_MAX], moved[INTEG_PATH_MAX], outside[INTEG_PATH_MAX], path[INTEG_PATH_MAX],
                bridge[INTEG_PATH_MAX], decoy[INTEG_PATH_MAX];
        struct integ_result res;
        struct stat st;

        snprintf(vms, sizeof(vms), "%s", integ_path(t, "vms"));
        snprintf(moved, sizeof(moved), "%s", integ_path(t, "vms.moved"));
        snprintf(outside, sizeof(outside), "%s", integ_path(t, "outside"));
        snprintf(path, sizeof(path), "%s", integ_path(t, "vms/swap.vsock"));
        snprintf(bridge, sizeof(bridge), "%s", integ_path(t, "vms.moved/swap.vsock_1073741824"));
        snprintf(decoy, sizeof(decoy), "%s", integ_path(t, "outside/swap.vsock_1073741824"));
        assert_int_equal(mkdir(vms, 0755), 0);
        assert_int_equal(mkdir(outside, 0755), 0);
        integ_cli(t, &res, NULL, "vm", "add", "swap", "--hvsock", path, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);

        assert_int_equal(rename(vms, moved), 0);
        assert_int_equal(symlink(outside, vms), 0);
        assert_int_equal(lstat(bridge, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        integ_touch(decoy);
        integ_cli(t, &res, NULL, "vm", "rm", "swap", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        assert_int_equal(lstat(decoy, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(lstat(bridge, &st), -1);

        /* Added again by the swapped path, it resolves outside the root and is refused. */
        assert_int_equal(rmdir(moved) == 0 || errno == ENOTEMPTY, 1);
        assert_int_equal(unlink(vms), 0);
        assert_int_equal(symlink("/etc", vms), 0);
        integ_cli(t, &res, NULL, "vm", "add", "swap", "--hvsock", path, NULL);
        assert_int_not_equal(res.code, 0);
        integ_assert_contains(res.err, path);
        integ_assert_contains(res.err, "--hvsock-root");
        integ_result_done(&res);
}

/* vsockmuxd without --hvsock-root confines hybrid-vsock paths to its --state-dir. */
static void test_hvsock_paths_default_to_the_state_dir(void **state)
{
        struct integ *t = *state;
        char sock[INTEG_PATH_MAX], sdir[INTEG_PATH_MAX], inside[INTEG_PATH_MAX], log[INTEG_PATH_MAX];
        char *daemon[] = { (char *)t->cfg->daemon, (char *)"--socket", sock, (char *)"--state-dir", sdir, NULL };
        struct integ_result res = { 0 };
        pid_t pid;
        int code;

        snprintf(sock, sizeof(sock), "%s", integ_path(t, "default.sock"));
        snprintf(sdir, sizeof(sdir), "%s", integ_path(t, "default-state"));
        snprintf(inside, sizeof(inside), "%s", integ_path(t, "default-state/vm.vsock"));
        snprintf(log, sizeof(log), "%s", integ_path(t, "default.log"));
        pid = integ_spawn(t, daemon, NULL, log, log);
        for (int tries = 0;; tries++) {
                char *argv[] = { (char *)t->cfg->cli, (char *)"--socket", sock, (char *)"vm", (char *)"ls", NULL };

                integ_runv(t, &res, NULL, argv);
                code = res.code;
                integ_result_done(&res);
                if (code == 0)
                        break;
                if (tries > 200)
                        fail_msg("the second vsockmuxd never served %s", sock);
                integ_sleep_ms(25);
        }
        {
                char *argv[] = { (char *)t->cfg->cli,
                                 (char *)"--socket",
                                 sock,
                                 (char *)"vm",
                                 (char *)"add",
                                 (char *)"out",
                                 (char *)"--hvsock",
                                 (char *)integ_hvsock(t, "out"),
                                 NULL };

                integ_runv(t, &res, NULL, argv);
                assert_int_not_equal(res.code, 0);
                integ_assert_contains(res.err, integ_hvsock(t, "out"));
                integ_assert_contains(res.err, "--state-dir");
                integ_result_done(&res);
        }
        {
                char *argv[] = { (char *)t->cfg->cli, (char *)"--socket", sock,   (char *)"vm", (char *)"add",
                                 (char *)"in",        (char *)"--hvsock", inside, NULL };

                integ_runv(t, &res, NULL, argv);
                integ_assert_code(t, &res, 0);
                integ_result_done(&res);
        }
        assert_int_equal(kill(pid, SIGTERM), 0);
        assert_int_equal(integ_reap(t, pid, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
}

/* Upgrade runs a binary with the daemon's rights: a --group member is refused before anything
 * runs, and the daemon serves on. */
static void test_group_member_may_not_upgrade(void **state)
{
        struct priv *p = *state;
        struct integ *t = priv_start(p, "--group");
        struct integ_result res;
        char script[INTEG_PATH_MAX + 16], marker[INTEG_PATH_MAX + 16];
        FILE *f;

        snprintf(script, sizeof(script), "%s/up", p->nobody_dir);
        snprintf(marker, sizeof(marker), "%s/ran", p->nobody_dir);
        f = fopen(script, "w");
        assert_non_null(f);
        fprintf(f, "#!/bin/sh\ntouch %s\n", marker);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(chmod(script, 0755), 0);
        integ_cli_as_nobody(t, &res, NULL, "upgrade", "--binary", script, NULL);
        assert_int_equal(res.code, 1);
        integ_assert_contains(res.err, "PERMISSION_DENIED");
        integ_result_done(&res);
        assert_int_equal(access(marker, F_OK), -1);
        integ_cli_as_nobody(t, &res, NULL, "vm", "ls", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_endpoints_open_with_the_callers_rights, priv_setup, priv_teardown),
                cmocka_unit_test_setup_teardown(test_group_member_may_not_upgrade, priv_setup, priv_teardown),
                cmocka_unit_test_setup_teardown(test_read_group_may_list_and_wait_but_not_act, priv_setup,
                                                priv_teardown),
                cmocka_unit_test_setup_teardown(test_restore_endpoints_open_with_the_callers_rights, priv_setup,
                                                priv_teardown),
                cmocka_unit_test(test_hvsock_directory_swapped_for_a_symlink_is_not_followed),
                cmocka_unit_test(test_hvsock_paths_default_to_the_state_dir),
        };

        if (geteuid() != 0) {
                fprintf(stderr, "SKIP: needs root to run the CLI as uid 65534\n");
                return 77;
        }
        if (access(INTEG_SETPRIV, X_OK) < 0) {
                fprintf(stderr, "SKIP: " INTEG_SETPRIV " (util-linux) is missing\n");
                return 77;
        }
        return integ_run("integration-privilege", tests, ARRAY_N(tests), argc, argv);
}
