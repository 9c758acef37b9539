/* A process's stdin against a real vsockmuxd and a simulated guest: attach clients feed it (exec
 * -i) in conmon's format, several share it, it stays open when they leave unless --stdin-once,
 * and `vsockmux attach` forwards its own stdin; a stdin fifo follows containerd's rules (no
 * writer yet is not EOF). Clients are raw SEQPACKET sockets, real fifos and the CLI as its own
 * process. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

/* `exec demo --detach [opts] -- sh -c SCRIPT`: the pid. */
static long exec_detached_with(struct integ *t, const char *opt1, const char *opt2, const char *script)
{
        char *args[10] = { (char *)"exec", (char *)"demo", (char *)"--detach" };
        struct integ_result res;
        size_t n = 3;

        if (opt1)
                args[n++] = (char *)opt1;
        if (opt2)
                args[n++] = (char *)opt2;
        args[n++] = (char *)"--";
        args[n++] = (char *)"sh";
        args[n++] = (char *)"-c";
        args[n++] = (char *)script;
        integ_cliv(t, &res, NULL, args);
        return integ_detached_pid(t, &res);
}

/* Receives stdout packets ([2][bytes]) into acc until it holds needle; fails on EOF or the
 * socket's receive timeout first. The scripts here write nothing to stderr, so a stderr packet
 * ([3][bytes]) is a failure too: stdin's own bytes must never come back as output. */
static void recv_until(int fd, char *acc, size_t cap, const char *needle)
{
        uint8_t pkt[8193];

        while (!strstr(acc, needle)) {
                ssize_t n = recv(fd, pkt, sizeof(pkt), 0);
                size_t have = strlen(acc);

                if (n <= 0)
                        fail_msg("attach output ended (%zd, %s) before '%s'; got '%s'", n,
                                 n < 0 ? strerror(errno) : "EOF", needle, acc);
                if (pkt[0] != 2)
                        fail_msg("a packet for stream %u ('%.*s') while waiting for '%s'", pkt[0], (int)n - 1,
                                 (const char *)pkt + 1, needle);
                if (have + (size_t)n - 1 >= cap)
                        fail_msg("more output than expected before '%s': '%s'", needle, acc);
                memcpy(acc + have, pkt + 1, (size_t)n - 1);
                acc[have + (size_t)n - 1] = '\0';
        }
}

static void send_str(int fd, const char *s)
{
        assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static void expect_wait_code(struct integ *t, long pid, int code)
{
        struct integ_result res;
        char pid_s[32];

        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, code);
        integ_result_done(&res);
}

static void expect_running(struct integ *t, long pid)
{
        struct json_object *all, *p = integ_ps_find(t, "demo", pid, &all);

        assert_string_equal(integ_json_str(p, "state"), "running");
        json_object_put(all);
}

#define ECHO_LINES "while read l; do echo \"got $l\"; done; echo stdin-ended"

static void test_attach_clients_share_stdin_which_stays_open_until_close_stdin(void **state)
{
        struct integ *t = *state;
        char path[INTEG_PATH_MAX], acc1[4096] = "", acc2[4096] = "", acc3[4096] = "", pid_s[32];
        struct integ_result res;
        int c1, c2, c3;
        long pid;

        integ_vm_with_sim(t, "demo");
        pid = exec_detached_with(t, "-i", NULL, ECHO_LINES);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_attach_path(t, "demo", pid, path, sizeof(path));
        c1 = integ_connect_unix(path, SOCK_SEQPACKET);
        c2 = integ_connect_unix(path, SOCK_SEQPACKET);

        /* Each client's bytes reach the one stdin; both see every answer. */
        send_str(c1, "one\n");
        recv_until(c1, acc1, sizeof(acc1), "got one\n");
        recv_until(c2, acc2, sizeof(acc2), "got one\n");
        send_str(c2, "two\n");
        recv_until(c1, acc1, sizeof(acc1), "got two\n");
        recv_until(c2, acc2, sizeof(acc2), "got two\n");

        /* Every client leaves: without --stdin-once stdin stays open for the next one. */
        close(c1);
        close(c2);
        c3 = integ_connect_unix(path, SOCK_SEQPACKET);
        send_str(c3, "three\n");
        recv_until(c3, acc3, sizeof(acc3), "got three\n");
        expect_running(t, pid);

        /* CloseStdin ends it after what was written. */
        integ_cli(t, &res, NULL, "close-stdin", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        recv_until(c3, acc3, sizeof(acc3), "stdin-ended\n");
        expect_wait_code(t, pid, 0);
        integ_expect_closed(t, c3, "the attach client of an exited process");
        close(c3);
}

static void test_stdin_once_ends_stdin_when_the_last_client_leaves(void **state)
{
        struct integ *t = *state;
        char path[INTEG_PATH_MAX], acc1[4096] = "", acc2[4096] = "";
        int c1, c2;
        long pid;

        integ_vm_with_sim(t, "demo");
        pid = exec_detached_with(t, "-i", "--stdin-once", ECHO_LINES);
        integ_attach_path(t, "demo", pid, path, sizeof(path));
        c1 = integ_connect_unix(path, SOCK_SEQPACKET);
        c2 = integ_connect_unix(path, SOCK_SEQPACKET);
        send_str(c1, "a\n");
        recv_until(c2, acc2, sizeof(acc2), "got a\n");
        close(c1);
        /* One client is still there: the session goes on. */
        send_str(c2, "b\n");
        recv_until(c2, acc2, sizeof(acc2), "got b\n");
        close(c2);
        /* The last one left: the process sees EOF after what they wrote. */
        expect_wait_code(t, pid, 0);
        c1 = integ_connect_unix(path, SOCK_SEQPACKET);
        recv_until(c1, acc1, sizeof(acc1), "got a\ngot b\nstdin-ended\n");
        integ_expect_closed(t, c1, "the attach client of an exited process");
        close(c1);
}

static void test_attach_cli_forwards_its_stdin_by_exec_id(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX];
        struct integ_result res;
        int in[2], outfd, code;
        pid_t cli;
        long pid;

        integ_vm_with_sim(t, "demo");
        pid = exec_detached_with(t, "-i", "--id=chat", ECHO_LINES);
        snprintf(out, sizeof(out), "%s", integ_path(t, "attach.out"));
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        outfd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(outfd >= 0);
        {
                char *args[] = { (char *)"attach", (char *)"demo", (char *)"chat", NULL };

                cli = integ_spawn_fds(t, integ_cli_argv(t, args), in[0], outfd, -1);
        }
        close(in[0]);
        close(outfd);
        assert_int_equal(write(in[1], "hello\n", 6), 6);
        if (!integ_wait_file_contains(out, "got hello\n", INTEG_WAIT_MS)) {
                integ_dump_daemon_log(t);
                fail_msg("what attach read on its stdin never reached the process");
        }
        /* Our EOF is not the process's: the attach only stops reading; CloseStdin (by the exec id
         * here) ends it. */
        close(in[1]);
        expect_running(t, pid);
        integ_cli(t, &res, NULL, "close-stdin", "demo", "chat", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        expect_wait_code(t, pid, 0);
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
        assert_true(integ_wait_file_contains(out, "got hello\nstdin-ended\n", 1));
}

static void test_interactive_refuses_a_stdin_path_and_stdin_once_needs_it(void **state)
{
        struct integ *t = *state;
        struct integ_result res;

        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--stdin-once", "--", "true", NULL);
        integ_assert_code(t, &res, 2);
        integ_assert_contains(res.err, "--stdin-once applies to -i");
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "-i", "--stdin", "/dev/null", "--", "true", NULL);
        integ_assert_code(t, &res, 2);
        integ_assert_contains(res.err, "--stdin cannot go with it");
        integ_result_done(&res);
        /* Attached, -i is this CLI's stdin. */
        {
                char in[INTEG_PATH_MAX];
                FILE *f;

                snprintf(in, sizeof(in), "%s", integ_path(t, "piped.in"));
                f = fopen(in, "w");
                assert_non_null(f);
                fputs("piped\n", f);
                fclose(f);
                integ_cli(t, &res, in, "exec", "demo", "-i", "--", "sh", "-c", ECHO_LINES, NULL);
        }
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "got piped\nstdin-ended\n");
        integ_result_done(&res);
}

/* `exec --detach --stdin FIFO --stdout OUT -- sh -c 'cat; echo stdin-ended'`: the pid. The guest
 * dialled stdin before the exec answered (W1), so the daemon has looked at the fifo by then. */
static long exec_cat_fifo(struct integ *t, char *fifo, char *out)
{
        struct integ_result res;

        snprintf(fifo, INTEG_PATH_MAX, "%s", integ_path(t, "stdin.fifo"));
        snprintf(out, INTEG_PATH_MAX, "%s", integ_path(t, "cat.out"));
        assert_int_equal(mkfifo(fifo, 0600), 0);
        {
                char *args[] = { (char *)"exec",
                                 (char *)"demo",
                                 (char *)"--detach",
                                 (char *)"--stdin",
                                 fifo,
                                 (char *)"--stdout",
                                 out,
                                 (char *)"--",
                                 (char *)"sh",
                                 (char *)"-c",
                                 (char *)"cat; echo stdin-ended",
                                 NULL };

                integ_cliv(t, &res, NULL, args);
        }
        return integ_detached_pid(t, &res);
}

static int open_writer(const char *fifo)
{
        /* Non-blocking: the daemon holds the read end, so this succeeds unless it let it go. */
        int fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);

        if (fd < 0)
                fail_msg("cannot open %s for writing (%s): the daemon no longer reads it", fifo, strerror(errno));
        return fd;
}

static void test_stdin_fifo_with_no_writer_yet_is_not_eof(void **state)
{
        struct integ *t = *state;
        char fifo[INTEG_PATH_MAX], out[INTEG_PATH_MAX];
        char *text;
        long pid;
        int w;

        integ_vm_with_sim(t, "demo");
        pid = exec_cat_fifo(t, fifo, out);
        /* The writer comes after the process started, as a containerd client may; a fifo read as
         * EOF before would have ended cat and closed the daemon's read end (open_writer fails). */
        w = open_writer(fifo);
        assert_int_equal(write(w, "late\n", 5), 5);
        assert_true(integ_wait_file_contains(out, "late\n", INTEG_WAIT_MS));
        expect_running(t, pid);
        /* The writer that came closes: that is the end of stdin. */
        close(w);
        expect_wait_code(t, pid, 0);
        text = integ_read_file(out, NULL);
        assert_string_equal(text, "late\nstdin-ended\n");
        free(text);
}

static void test_stdin_fifo_writer_that_closes_without_writing_is_eof(void **state)
{
        struct integ *t = *state;
        char fifo[INTEG_PATH_MAX], out[INTEG_PATH_MAX];
        char *text;
        long pid;

        integ_vm_with_sim(t, "demo");
        pid = exec_cat_fifo(t, fifo, out);
        expect_running(t, pid);
        close(open_writer(fifo));
        expect_wait_code(t, pid, 0);
        text = integ_read_file(out, NULL);
        assert_string_equal(text, "stdin-ended\n");
        free(text);
}

static void test_close_stdin_ends_a_fifo_no_writer_opened(void **state)
{
        struct integ *t = *state;
        char fifo[INTEG_PATH_MAX], out[INTEG_PATH_MAX], pid_s[32];
        struct integ_result res;
        long pid;

        integ_vm_with_sim(t, "demo");
        pid = exec_cat_fifo(t, fifo, out);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "close-stdin", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        expect_wait_code(t, pid, 0);
        assert_true(integ_wait_file_contains(out, "stdin-ended\n", 1));
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_attach_clients_share_stdin_which_stays_open_until_close_stdin),
                cmocka_unit_test(test_stdin_once_ends_stdin_when_the_last_client_leaves),
                cmocka_unit_test(test_attach_cli_forwards_its_stdin_by_exec_id),
                cmocka_unit_test(test_interactive_refuses_a_stdin_path_and_stdin_once_needs_it),
                cmocka_unit_test(test_stdin_fifo_with_no_writer_yet_is_not_eof),
                cmocka_unit_test(test_stdin_fifo_writer_that_closes_without_writing_is_eof),
                cmocka_unit_test(test_close_stdin_ends_a_fifo_no_writer_opened),
        };

        return integ_run("integration-attach-stdin", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
