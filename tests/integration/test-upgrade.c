/* Live upgrade (vsockmux upgrade, SIGUSR2) against a real vsockmuxd: the new daemon takes the
 * control socket over and serves on it; and every way the new one can fail to take over (a
 * missing file, a crash at start, a signal, no answer in time, a refusal) leaves the old one
 * serving with the CLI exiting 1 and saying why. The test is a child subreaper:
 * the new daemon, orphaned when the old one exits, is ours to reap. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

static const char *script(struct integ *t, const char *name, const char *body)
{
        const char *path = integ_path(t, name);
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        fprintf(f, "#!/bin/sh\n%s\n", body);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(chmod(path, 0755), 0);
        return path;
}

/* The daemon still answers on its socket and is the one the harness started. */
static void expect_old_serves(struct integ *t)
{
        struct integ_result res;

        integ_cli(t, &res, NULL, "stats", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        if (!integ_alive(t, t->daemon))
                fail_msg("the old daemon is gone");
}

static void expect_refused(struct integ *t, const char *needle, ...)
{
        char *args[16] = { "upgrade" };
        unsigned n = 1;
        struct integ_result res;
        va_list ap;

        va_start(ap, needle);
        for (char *a; (a = va_arg(ap, char *)) && n < sizeof(args) / sizeof(args[0]) - 1;)
                args[n++] = a;
        va_end(ap);
        args[n] = NULL;
        integ_cliv(t, &res, NULL, args);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, needle);
        integ_assert_contains(res.err, "serves on");
        integ_result_done(&res);
        expect_old_serves(t);
}

static void test_missing_binary_leaves_the_old_daemon_serving(void **state)
{
        struct integ *t = *state;

        expect_refused(t, "cannot run /nonexistent/vsockmuxd: No such file or directory", "--binary",
                       "/nonexistent/vsockmuxd", NULL);
}

static void test_binary_that_exits_at_start_is_rolled_back(void **state)
{
        struct integ *t = *state;

        expect_refused(t, "exited with status 3 before it was ready", "--binary", script(t, "exits", "exit 3"), NULL);
}

static void test_binary_killed_by_a_signal_at_start_is_rolled_back(void **state)
{
        struct integ *t = *state;

        expect_refused(t, "was killed by signal 11", "--binary", script(t, "segv", "kill -SEGV $$"), NULL);
}

static void test_binary_not_ready_within_the_deadline_is_killed_and_rolled_back(void **state)
{
        struct integ *t = *state;

        expect_refused(t, "was not ready within 1000 ms", "--binary", script(t, "hangs", "exec sleep 600"), "--timeout",
                       "1", NULL);
}

/* A new binary that reads the handover and refuses it (handover-peer stands in for another build). */
static void test_binary_that_refuses_the_handover_is_rolled_back(void **state)
{
        struct integ *t = *state;
        char body[INTEG_PATH_MAX * 2];

        snprintf(body, sizeof(body),
                 "exec %s/tests/integration/handover-peer refuse 'state schema version 1 is too old'",
                 getenv("VSOCKMUX_BUILD_ROOT"));
        expect_refused(t, "refused the handover: state schema version 1 is too old", "--binary",
                       script(t, "refuses", body), NULL);
}

/* Its VM goes with it (tests/integration/test-upgrade-vms.c shows what the guest sees). */
static void test_daemon_serving_a_vm_hands_it_over(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        const char *pid_at;
        int code = -1;
        pid_t pid;

        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "upgrade", NULL);
        integ_assert_code(t, &res, 0);
        pid_at = strstr(res.out, "serves as pid ");
        assert_non_null(pid_at);
        pid = (pid_t)atol(pid_at + strlen("serves as pid "));
        integ_result_done(&res);
        assert_int_equal(integ_reap(t, t->daemon, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
        t->daemon = pid;
        integ_wait_bridge(t, "demo", "connected");
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", "exit 4", NULL);
        integ_assert_code(t, &res, 4);
        integ_result_done(&res);
}

/* The new vsockmuxd refuses a state schema newer than its own, naming both, and exits 1. */
static void test_new_daemon_refuses_a_newer_state_schema(void **state)
{
        struct integ *t = *state;
        char peer[INTEG_PATH_MAX];
        struct integ_result res;

        snprintf(peer, sizeof(peer), "%s/tests/integration/handover-peer", getenv("VSOCKMUX_BUILD_ROOT"));
        integ_runv(t, &res, NULL,
                   (char *const[]){ peer, "old", "99", (char *)t->cfg->daemon, "--socket",
                                    (char *)integ_path(t, "b.sock"), "--state-dir", t->state_dir, NULL });
        assert_int_equal(res.code, 1);
        integ_assert_contains(res.out, "state schema version 99, this vsockmuxd reads 1 to");
        integ_result_done(&res);
}

/* One upgrade at a time: SIGUSR2 while an upgrade waits for its new daemon is refused by name.
 * A client connecting meanwhile waits in the control socket's backlog (the listener is with the
 * new daemon) and is answered once the first upgrade rolled back on its deadline. */
static void test_second_upgrade_while_one_waits_is_refused(void **state)
{
        struct integ *t = *state;
        char body[INTEG_PATH_MAX + 64], *args[] = { "upgrade", "--binary", NULL, "--timeout", "5", NULL };
        char *stats[] = { "stats", NULL };
        const char *started = integ_path(t, "started");
        pid_t first, waiting;
        int code = -1;

        snprintf(body, sizeof(body), "touch %s; exec sleep 600", started);
        args[2] = (char *)script(t, "hangs", body);
        first = integ_spawn(t, integ_cli_argv(t, args), NULL, integ_path(t, "first.out"), integ_path(t, "first.err"));
        for (int waited = 0; access(started, F_OK) != 0; waited += 20) {
                if (waited > INTEG_WAIT_MS)
                        fail_msg("the first upgrade never started its binary");
                integ_sleep_ms(20);
        }
        waiting = integ_spawn(t, integ_cli_argv(t, stats), NULL, NULL, NULL);
        assert_int_equal(kill(t->daemon, SIGUSR2), 0);
        assert_true(integ_wait_file_contains(t->daemon_log, "SIGUSR2: upgrade failed: an upgrade is already under way",
                                             INTEG_WAIT_MS));
        assert_int_equal(integ_reap(t, first, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 1);
        assert_true(
                integ_wait_file_contains(integ_path(t, "first.err"), "was not ready within 5000 ms", INTEG_WAIT_MS));
        assert_int_equal(integ_reap(t, waiting, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
        expect_old_serves(t);
}

/* SIGTERM while an upgrade waits: the daemon stops cleanly (exit 0, nothing left behind under
 * ASan), the new binary it started is killed with it, and the waiting CLI fails. */
static void test_sigterm_during_an_upgrade_stops_both(void **state)
{
        struct integ *t = *state;
        char body[INTEG_PATH_MAX + 64], *args[] = { "upgrade", "--binary", NULL, NULL };
        const char *started = integ_path(t, "started");
        char *pid_text;
        pid_t cli, child;
        int code = -1;

        snprintf(body, sizeof(body), "echo $$ > %s.tmp; mv %s.tmp %s; exec sleep 600", started, started, started);
        args[2] = (char *)script(t, "hangs", body);
        cli = integ_spawn(t, integ_cli_argv(t, args), NULL, NULL, NULL);
        for (int waited = 0; access(started, F_OK) != 0; waited += 20) {
                if (waited > INTEG_WAIT_MS)
                        fail_msg("the upgrade never started its binary");
                integ_sleep_ms(20);
        }
        pid_text = integ_read_file(started, NULL);
        assert_non_null(pid_text);
        child = (pid_t)atol(pid_text);
        free(pid_text);
        assert_true(child > 0);
        assert_int_equal(kill(t->daemon, SIGTERM), 0);
        assert_int_equal(integ_reap(t, t->daemon, INTEG_WAIT_MS, &code), 0);
        t->daemon = 0;
        assert_int_equal(code, 0);
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        assert_int_not_equal(code, 0);
        /* Reaped by the daemon before it went: no such process, not even a zombie of ours. */
        assert_int_equal(kill(child, 0), -1);
}

/* The new binary gets the handover socket (fd 3) and nothing of the daemon's own: no socket (the
 * control listener and connections, guest connections), no io_uring, signalfd or timer; fds the
 * daemon itself inherited from its parent are its parent's business. */
static void test_new_binary_inherits_only_the_handover_socket(void **state)
{
        struct integ *t = *state;
        char body[2 * INTEG_PATH_MAX], *fds, *line, *save = NULL;
        const char *list = integ_path(t, "fds");
        int idle = integ_connect_unix(t->sock, SOCK_STREAM); /* an accepted connection in the daemon */
        unsigned sockets = 0;

        snprintf(body, sizeof(body), "for f in /proc/$$/fd/*; do echo \"${f##*/} $(readlink $f)\"; done > %s; exit 9",
                 list);
        expect_refused(t, "exited with status 9", "--binary", script(t, "lists", body), NULL);
        fds = integ_read_file(list, NULL);
        assert_non_null(fds);
        for (line = strtok_r(fds, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                const char *target = strchr(line, ' ');

                if (!target)
                        continue;
                if (strncmp(line, "3 socket:", 9) == 0) {
                        sockets++;
                        continue;
                }
                if (strstr(target, "socket:") || strstr(target, "anon_inode:"))
                        fail_msg("the new binary inherited the daemon's fd %s", line);
        }
        assert_int_equal(sockets, 1);
        free(fds);
        close(idle);
}

static pid_t upgrade_ok(struct integ *t, const char *binary)
{
        struct integ_result res;
        const char *pid_at;
        int code = -1;
        pid_t pid;

        if (binary)
                integ_cli(t, &res, NULL, "upgrade", "--binary", binary, NULL);
        else
                integ_cli(t, &res, NULL, "upgrade", NULL);
        integ_assert_code(t, &res, 0);
        pid_at = strstr(res.out, "serves as pid ");
        assert_non_null(pid_at);
        pid = (pid_t)atol(pid_at + strlen("serves as pid "));
        assert_true(pid > 0);
        assert_int_not_equal(pid, t->daemon);
        integ_result_done(&res);
        /* The old one goes with status 0 once its answer is out. */
        assert_int_equal(integ_reap(t, t->daemon, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
        t->daemon = pid;
        return pid;
}

/* The control socket stays where it was, served by the new daemon; then a second upgrade. */
static void test_upgrade_hands_the_control_socket_to_the_new_daemon(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        pid_t first, second;

        first = upgrade_ok(t, t->cfg->daemon);
        integ_cli(t, &res, NULL, "stats", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        second = upgrade_ok(t, NULL);
        assert_int_not_equal(first, second);
        integ_vm_with_sim(t, "demo");
}

/* SIGUSR2: the same, to the executable the daemon was started from. */
static void test_sigusr2_upgrades_to_the_started_executable(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        int code = -1;

        assert_int_equal(kill(t->daemon, SIGUSR2), 0);
        assert_int_equal(integ_reap(t, t->daemon, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
        t->daemon = 0;
        integ_cli(t, &res, NULL, "stats", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        assert_true(integ_wait_file_contains(t->daemon_log, ") took over", INTEG_WAIT_MS));
        {
                char *log = integ_read_file(t->daemon_log, NULL);
                const char *at = log ? strstr(log, "SIGUSR2: /") : NULL;

                at = at ? strstr(at, "(pid ") : NULL;
                assert_non_null(at);
                t->daemon = (pid_t)atol(at + 5);
                free(log);
        }
        assert_true(t->daemon > 0);
}

/* For tests that start their own daemon: *state stays the config. */
static int own_daemon(void **state)
{
        (void)state;
        return 0;
}

/* A dir of the test's own, for what must exist before the daemon starts. */
static void own_dir(char *buf, size_t len)
{
        snprintf(buf, len, "/tmp/vsockmux-upgrade.XXXXXX");
        assert_non_null(mkdtemp(buf));
}

/* GET /metrics over the Unix socket at path: true when it answers 200. */
static bool metrics_answer(const char *path)
{
        static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
        char buf[64] = "";
        int fd = integ_connect_unix(path, SOCK_STREAM);
        bool ok;

        ok = write(fd, req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1) && read(fd, buf, sizeof(buf) - 1) > 0 &&
             strstr(buf, " 200 ");
        close(fd);
        return ok;
}

/* --metrics-listen cannot ride along inside libmicrohttpd: it stops for the upgrade and the new
 * daemon binds it; a rollback starts it again. */
static void test_metrics_listener_follows_the_upgrade_and_its_rollback(void **state)
{
        struct integ_config *cfg = *state;
        char dir[INTEG_DIR_MAX], sock[INTEG_PATH_MAX];
        char *extra[] = { "--metrics-listen", sock, NULL };
        struct integ *t;

        own_dir(dir, sizeof(dir));
        snprintf(sock, sizeof(sock), "%s/metrics.sock", dir);
        assert_int_equal(integ_new_args(cfg, extra, &t), 0);
        assert_true(metrics_answer(sock));
        expect_refused(t, "exited with status 3 before it was ready", "--binary", script(t, "exits", "exit 3"), NULL);
        assert_true(metrics_answer(sock));
        upgrade_ok(t, t->cfg->daemon);
        assert_true(metrics_answer(sock));
        assert_int_equal(integ_free(t), 0);
        (void)unlink(sock);
        (void)rmdir(dir);
}

static void copy_file(struct integ *t, const char *from, const char *to)
{
        struct integ_result res;

        integ_runv(t, &res, NULL, (char *const[]){ "/bin/cp", (char *)from, (char *)to, NULL });
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
}

/* The default binary is the path the daemon was started from, read again: a package upgrade
 * replaced the file (renamed over it), and the new daemon runs the new file, not the old inode. */
static void test_default_binary_is_the_file_now_at_the_started_path(void **state)
{
        static struct integ_config copy;
        char dir[INTEG_DIR_MAX], next[INTEG_PATH_MAX + 8], exe[64];
        struct stat want, got;
        struct integ *t;
        pid_t pid;

        copy = *(struct integ_config *)*state;
        own_dir(dir, sizeof(dir));
        snprintf(copy.daemon, sizeof(copy.daemon), "%s/vsockmuxd", dir);
        snprintf(next, sizeof(next), "%s.next", copy.daemon);
        assert_int_equal(integ_new(*state, &t), 0); /* only to run cp through the harness */
        copy_file(t, ((struct integ_config *)*state)->daemon, copy.daemon);
        assert_int_equal(integ_free(t), 0);
        assert_int_equal(integ_new(&copy, &t), 0);
        copy_file(t, ((struct integ_config *)*state)->daemon, next);
        assert_int_equal(rename(next, copy.daemon), 0);
        assert_int_equal(stat(copy.daemon, &want), 0);

        pid = upgrade_ok(t, NULL);
        snprintf(exe, sizeof(exe), "/proc/%d/exe", (int)pid);
        assert_int_equal(stat(exe, &got), 0);
        assert_int_equal(got.st_ino, want.st_ino);
        assert_int_equal(got.st_dev, want.st_dev);
        assert_int_equal(integ_free(t), 0);
        (void)unlink(copy.daemon);
        (void)rmdir(dir);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_missing_binary_leaves_the_old_daemon_serving),
                cmocka_unit_test(test_binary_that_exits_at_start_is_rolled_back),
                cmocka_unit_test(test_binary_killed_by_a_signal_at_start_is_rolled_back),
                cmocka_unit_test(test_binary_not_ready_within_the_deadline_is_killed_and_rolled_back),
                cmocka_unit_test(test_binary_that_refuses_the_handover_is_rolled_back),
                cmocka_unit_test(test_daemon_serving_a_vm_hands_it_over),
                cmocka_unit_test(test_new_daemon_refuses_a_newer_state_schema),
                cmocka_unit_test(test_second_upgrade_while_one_waits_is_refused),
                cmocka_unit_test(test_sigterm_during_an_upgrade_stops_both),
                cmocka_unit_test(test_new_binary_inherits_only_the_handover_socket),
                cmocka_unit_test_setup_teardown(test_upgrade_hands_the_control_socket_to_the_new_daemon, integ_setup,
                                                integ_teardown),
                cmocka_unit_test_setup_teardown(test_sigusr2_upgrades_to_the_started_executable, integ_setup,
                                                integ_teardown),
                cmocka_unit_test_setup_teardown(test_metrics_listener_follows_the_upgrade_and_its_rollback, own_daemon,
                                                own_daemon),
                cmocka_unit_test_setup_teardown(test_default_binary_is_the_file_now_at_the_started_path, own_daemon,
                                                own_daemon),
        };

        if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
                perror("prctl(PR_SET_CHILD_SUBREAPER)");
                return 1;
        }
        return integ_run("integration-upgrade", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
