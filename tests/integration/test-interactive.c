/* Interactive stdio against a real vsockmuxd and a simulated guest: signals an attached exec
 * forwards, terminals, stdin from attach clients. Each CLI is its own process, driven as a user
 * would (signals to it, a pty around it). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

/* `vsockmux exec demo [--container c1] [opt] -- sh -c SCRIPT`, in the container with hcsshim's
 * guest (integ_killable_args) when killable, for a signal or a resize to reach the process. */
static char **exec_argv(struct integ *t, bool killable, const char *opt, const char *script)
{
        char *args[16];
        size_t n = 0;

        args[n++] = (char *)"exec";
        args[n++] = (char *)"demo";
        if (killable)
                n = integ_killable_args(t, args, n);
        if (opt)
                args[n++] = (char *)opt;
        args[n++] = (char *)"--";
        args[n++] = (char *)"sh";
        args[n++] = (char *)"-c";
        args[n++] = (char *)script;
        args[n] = NULL;
        return integ_cli_argv(t, args);
}

/* Starts exec_argv()'s command attached, output to files; waits for "ready". */
static pid_t spawn_attached_in(struct integ *t, bool killable, const char *opt, const char *script, char *out,
                               char *err)
{
        pid_t pid;

        snprintf(out, INTEG_PATH_MAX, "%s", integ_path(t, "cli.out"));
        snprintf(err, INTEG_PATH_MAX, "%s", integ_path(t, "cli.err"));
        pid = integ_spawn(t, exec_argv(t, killable, opt, script), NULL, out, err);
        assert_true(pid > 0);
        if (!integ_wait_file_contains(out, "ready\n", INTEG_WAIT_MS)) {
                integ_dump_daemon_log(t);
                fail_msg("the process never said ready");
        }
        return pid;
}

/* The same where a forwarded signal reaches the process with either guest. */
static pid_t spawn_attached(struct integ *t, const char *opt, const char *script, char *out, char *err)
{
        return spawn_attached_in(t, true, opt, script, out, err);
}

static void test_exec_forwards_signals_the_process_traps(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX], err[INTEG_PATH_MAX], script[512];
        char *text;
        pid_t cli;
        int code;

        integ_vm_for_kills(t, "demo");
        /* Each trap fires once the loop's sleep ends; the process keeps running after USR1/HUP. */
        snprintf(script, sizeof(script),
                 "trap 'echo got USR1' USR1; trap 'echo got HUP' HUP; trap 'echo got INT; exit 9' INT; "
                 "echo ready; %s",
                 integ_alive_loop(t));
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

/* Outside any container our guest takes a forwarded signal. hcsshim's refuses it (its
 * SignalProcess looks only inside containers): the CLI says so in one line and relays on. */
static void test_exec_forwarded_signal_outside_a_container(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX], err[INTEG_PATH_MAX], script[512];
        char *text;
        pid_t cli;
        int code;

        integ_vm_with_sim(t, "demo");
        snprintf(script, sizeof(script), "trap 'echo got USR1' USR1; echo ready; %s; echo done", integ_wait_go(t));
        cli = spawn_attached_in(t, false, NULL, script, out, err);
        assert_int_equal(kill(cli, SIGUSR1), 0);
        if (t->cfg->upstream) {
                assert_true(integ_wait_file_contains(err, "cannot forward SIGUSR1", INTEG_WAIT_MS));
                text = integ_read_file(err, NULL);
                integ_assert_one_line_error(text);
                integ_assert_contains(text, "signals reach only processes inside a container with hcsshim's guest");
                free(text);
        } else
                assert_true(integ_wait_file_contains(out, "got USR1\n", INTEG_WAIT_MS));
        assert_true(integ_alive(t, cli));
        integ_touch(integ_path(t, "go"));
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
        text = integ_read_file(out, NULL);
        assert_string_equal(text, t->cfg->upstream ? "ready\ndone\n" : "ready\ngot USR1\ndone\n");
        free(text);
}

static void test_exec_ctrl_c_that_ends_the_process_exits_130(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX], err[INTEG_PATH_MAX], script[512];
        char *text;
        pid_t cli;
        int code;

        integ_vm_for_kills(t, "demo");
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

        integ_vm_for_kills(t, "demo");
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

/* A pty of the test's own, as a user's terminal around the CLI; ret_slave is for the CLI. */
static int open_terminal(unsigned short rows, unsigned short cols, int *ret_slave)
{
        struct winsize ws = { .ws_row = rows, .ws_col = cols };
        int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);

        assert_true(master >= 0);
        assert_int_equal(grantpt(master), 0);
        assert_int_equal(unlockpt(master), 0);
        *ret_slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
        assert_true(*ret_slave >= 0);
        assert_int_equal(ioctl(master, TIOCSWINSZ, &ws), 0);
        return master;
}

/* Reads the terminal's output into buf (NUL-terminated) until it holds needle; fails at EOF or
 * after INTEG_WAIT_MS. A pty master reads EIO once every slave is closed. */
static void terminal_read_until(struct integ *t, int master, char *buf, size_t cap, size_t *len, const char *needle)
{
        while (!strstr(buf, needle)) {
                struct pollfd p = { .fd = master, .events = POLLIN };
                ssize_t n;

                if (poll(&p, 1, INTEG_WAIT_MS) <= 0 || *len + 1 >= cap) {
                        integ_dump_daemon_log(t);
                        fail_msg("no '%s' on the terminal; it shows '%s'", needle, buf);
                }
                n = read(master, buf + *len, cap - 1 - *len);
                if (n <= 0) {
                        integ_dump_daemon_log(t);
                        fail_msg("the terminal closed before '%s'; it showed '%s'", needle, buf);
                }
                *len += (size_t)n;
                buf[*len] = '\0';
        }
}

static void test_exec_tty_gives_a_terminal_that_follows_our_size(void **state)
{
        struct integ *t = *state;
        char script[512], screen[8192] = "";
        struct termios before, after;
        const char *resized;
        size_t len = 0;
        int master, slave, code;
        pid_t cli;

        integ_vm_for_kills(t, "demo");
        master = open_terminal(30, 100, &slave);
        assert_int_equal(tcgetattr(slave, &before), 0);
        assert_true(before.c_lflag & ICANON);
        snprintf(script, sizeof(script),
                 "tty; stty size; echo ready; read line; stty size; echo \"got $line\" >&2; exit 4");
        cli = integ_spawn_fds(t, exec_argv(t, true, "-t", script), slave, slave, slave);
        terminal_read_until(t, master, screen, sizeof(screen), &len, "ready\r\n");
        /* A real console in the guest, the size of ours, and its line endings. */
        integ_assert_contains(screen, "/dev/pts/");
        integ_assert_contains(screen, "\r\n30 100\r\n");
        assert_null(strstr(screen, "not a tty"));
        /* Our terminal is raw while the CLI relays: the console's line discipline does the work. */
        assert_int_equal(tcgetattr(slave, &after), 0);
        assert_false(after.c_lflag & (ICANON | ECHO));

        /* We grow; the CLI hears SIGWINCH (as from its terminal) and resizes the console before it
         * reads the line that follows: the signal is pending once kill() returns. */
        {
                struct winsize ws = { .ws_row = 40, .ws_col = 120 };

                assert_int_equal(ioctl(master, TIOCSWINSZ, &ws), 0);
        }
        assert_int_equal(kill(cli, SIGWINCH), 0);
        assert_int_equal(write(master, "hello\r", 6), 6);
        terminal_read_until(t, master, screen, sizeof(screen), &len, "got hello\r\n");
        resized = strstr(screen, "ready\r\n");
        integ_assert_contains(resized, "40 120\r\n");
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 4);
        /* And it put our terminal back as it found it. */
        assert_int_equal(tcgetattr(slave, &after), 0);
        assert_int_equal(after.c_lflag, before.c_lflag);
        assert_int_equal(after.c_iflag, before.c_iflag);
        assert_int_equal(after.c_oflag, before.c_oflag);
        close(slave);
        close(master);
}

static void test_exec_tty_merges_stderr_and_refuses_a_stderr_path(void **state)
{
        struct integ *t = *state;
        struct integ_result res;

        integ_vm_with_sim(t, "demo");
        /* Not on a terminal ourselves: the console is the guest's all the same. */
        integ_cli(t, &res, NULL, "exec", "demo", "--tty", "--", "sh", "-c", "tty; echo to-stderr >&2; exit 3", NULL);
        integ_assert_code(t, &res, 3);
        integ_assert_contains(res.out, "/dev/pts/");
        integ_assert_contains(res.out, "to-stderr\r\n");
        assert_string_equal(res.err, "");
        integ_result_done(&res);

        /* Without --tty the same command has no terminal. */
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", "tty", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.out, "not a tty");
        integ_result_done(&res);

        integ_cli(t, &res, NULL, "exec", "demo", "-t", "--stderr", integ_path(t, "err.log"), "--", "true", NULL);
        integ_assert_code(t, &res, 2);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "--stderr cannot go with --tty");
        integ_result_done(&res);
        /* The daemon says the same to a client of its own. */
        integ_cli(t, &res, NULL, "exec", "demo", "-t", "--detach", "--stderr", integ_path(t, "err.log"), "--", "true",
                  NULL);
        integ_assert_code(t, &res, 2);
        integ_result_done(&res);
}

static void test_resize_a_detached_console_and_refuse_what_has_none(void **state)
{
        struct integ *t = *state;
        char script[512], out[INTEG_PATH_MAX], pid_s[32];
        struct integ_result res;
        long pid;

        integ_vm_for_kills(t, "demo");
        snprintf(out, sizeof(out), "%s", integ_path(t, "console.out"));
        snprintf(script, sizeof(script), "stty size; echo ready; %s; stty size", integ_wait_go(t));
        {
                char *args[16];
                size_t n = 0;

                args[n++] = (char *)"exec";
                args[n++] = (char *)"demo";
                n = integ_killable_args(t, args, n);
                args[n++] = (char *)"--detach";
                args[n++] = (char *)"--tty";
                args[n++] = (char *)"--stdout";
                args[n++] = out;
                args[n++] = (char *)"--";
                args[n++] = (char *)"sh";
                args[n++] = (char *)"-c";
                args[n++] = script;
                args[n] = NULL;
                integ_cliv(t, &res, NULL, args);
                integ_assert_code(t, &res, 0);
                pid = strtol(res.out, NULL, 10);
                integ_result_done(&res);
        }
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        assert_true(integ_wait_file_contains(out, "ready\r\n", INTEG_WAIT_MS));
        integ_cli(t, &res, NULL, "resize", "demo", pid_s, "12", "34", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_touch(integ_path(t, "go"));
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        assert_true(integ_wait_file_contains(out, "ready\r\n12 34\r\n", 1));
        {
                struct json_object *all, *p = integ_ps_find(t, "demo", pid, &all);

                assert_true(json_object_get_boolean(integ_json_get(p, "terminal")));
                json_object_put(all);
        }

        /* Exited now: nothing to resize. */
        integ_cli(t, &res, NULL, "resize", "demo", pid_s, "12", "34", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "not running");
        integ_result_done(&res);

        /* A console outside any container: hcsshim's ResizeConsole looks only inside one. */
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--tty", "--", "sh", "-c", integ_alive_loop(t), NULL);
        integ_assert_code(t, &res, 0);
        snprintf(pid_s, sizeof(pid_s), "%ld", strtol(res.out, NULL, 10));
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "resize", "demo", pid_s, "12", "34", NULL);
        if (t->cfg->upstream) {
                integ_assert_code(t, &res, 1);
                integ_assert_one_line_error(res.err);
                integ_assert_contains(res.err, "consoles resize only inside a container with hcsshim's guest");
        } else
                integ_assert_code(t, &res, 0);
        integ_result_done(&res);

        pid = integ_exec_detached(t, "demo", integ_alive_loop(t));
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "resize", "demo", pid_s, "12", "34", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "has no terminal");
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "resize", "demo", "99999", "12", "34", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "no process 99999");
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "resize", "demo", pid_s, "0", "34", NULL);
        integ_assert_code(t, &res, 2);
        integ_assert_one_line_error(res.err);
        integ_result_done(&res);
}

static void test_detach_keys_leave_the_process_running(void **state)
{
        struct integ *t = *state;
        char script[512], screen[8192] = "", pid_s[32];
        struct integ_result res;
        struct json_object *all, *p;
        size_t len = 0;
        int master, slave, code;
        long pid;
        pid_t cli;

        integ_vm_for_kills(t, "demo");
        master = open_terminal(24, 80, &slave);
        snprintf(script, sizeof(script), "echo ready; %s", integ_alive_loop(t));
        cli = integ_spawn_fds(t, exec_argv(t, true, "-t", script), slave, slave, slave);
        terminal_read_until(t, master, screen, sizeof(screen), &len, "ready\r\n");
        /* podman's default, ctrl-p then ctrl-q. */
        assert_int_equal(write(master, "\020\021", 2), 2);
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
        terminal_read_until(t, master, screen, sizeof(screen), &len, "keeps running");
        integ_assert_contains(screen, "detached from process ");
        pid = strtol(strstr(screen, "detached from process ") + strlen("detached from process "), NULL, 10);
        p = integ_ps_find(t, "demo", pid, &all);
        assert_string_equal(integ_json_str(p, "state"), "running");
        json_object_put(all);

        /* attach finds it (a terminal: raw again), and other keys detach it again. */
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        {
                char *args[] = { (char *)"attach",        (char *)"demo",     pid_s,
                                 (char *)"--detach-keys", (char *)"ctrl-a,x", NULL };

                cli = integ_spawn_fds(t, integ_cli_argv(t, args), slave, slave, slave);
        }
        {
                char *args[] = { (char *)"ps", (char *)"demo", (char *)"--json", NULL };
                struct json_object *o = NULL;

                /* Attached once the daemon counts the client: poll ps rather than sleep. */
                for (int i = 0; i < INTEG_WAIT_MS / 50; i++) {
                        integ_cliv(t, &res, NULL, args);
                        o = json_tokener_parse(res.out);
                        integ_result_done(&res);
                        if (o && strstr(json_object_to_json_string(o), "attach_socket"))
                                break;
                        json_object_put(o);
                        o = NULL;
                        integ_sleep_ms(50);
                }
                assert_non_null(o);
                json_object_put(o);
        }
        assert_int_equal(write(master, "\001x", 2), 2);
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
        p = integ_ps_find(t, "demo", pid, &all);
        assert_string_equal(integ_json_str(p, "state"), "running");
        json_object_put(all);
        integ_cli(t, &res, NULL, "kill", "demo", pid_s, "--signal", "KILL", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);

        integ_cli(t, &res, NULL, "exec", "demo", "--detach-keys", "ctrl-1", "--", "true", NULL);
        integ_assert_code(t, &res, 2);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "--detach-keys wants keys");
        integ_result_done(&res);
        close(slave);
        close(master);
}

static void test_close_stdin_ends_a_fifo_whose_writer_stays(void **state)
{
        struct integ *t = *state;
        char fifo[INTEG_PATH_MAX], out[INTEG_PATH_MAX], pid_s[32];
        struct integ_result res;
        int writer;
        long pid;

        integ_vm_with_sim(t, "demo");
        snprintf(fifo, sizeof(fifo), "%s", integ_path(t, "stdin.fifo"));
        snprintf(out, sizeof(out), "%s", integ_path(t, "cat.out"));
        assert_int_equal(mkfifo(fifo, 0600), 0);
        /* The client keeps its write end open the whole time, as containerd does. */
        writer = open(fifo, O_RDWR | O_CLOEXEC);
        assert_true(writer >= 0);
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
                                 (char *)"cat; echo stdin ended",
                                 NULL };

                integ_cliv(t, &res, NULL, args);
                integ_assert_code(t, &res, 0);
                pid = strtol(res.out, NULL, 10);
                integ_result_done(&res);
        }
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        assert_int_equal(write(writer, "hello\n", 6), 6);
        assert_true(integ_wait_file_contains(out, "hello\n", INTEG_WAIT_MS));
        {
                struct json_object *all, *p = integ_ps_find(t, "demo", pid, &all);

                /* Our writer is still there: without CloseStdin cat would wait for ever. */
                assert_string_equal(integ_json_str(p, "state"), "running");
                json_object_put(all);
        }
        integ_cli(t, &res, NULL, "close-stdin", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        assert_true(integ_wait_file_contains(out, "hello\nstdin ended\n", 1));
        /* Ended already: still a success. */
        integ_cli(t, &res, NULL, "close-stdin", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        close(writer);

        /* A process without stdin, and one that does not exist. */
        pid = integ_exec_detached(t, "demo", integ_alive_loop(t));
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "close-stdin", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "has no stdin");
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "close-stdin", "demo", "99999", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "no process 99999");
        integ_result_done(&res);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_exec_forwards_signals_the_process_traps),
                cmocka_unit_test(test_exec_forwarded_signal_outside_a_container),
                cmocka_unit_test(test_exec_ctrl_c_that_ends_the_process_exits_130),
                cmocka_unit_test(test_exec_sig_proxy_false_leaves_the_process_running),
                cmocka_unit_test(test_exec_tty_gives_a_terminal_that_follows_our_size),
                cmocka_unit_test(test_exec_tty_merges_stderr_and_refuses_a_stderr_path),
                cmocka_unit_test(test_resize_a_detached_console_and_refuse_what_has_none),
                cmocka_unit_test(test_detach_keys_leave_the_process_running),
                cmocka_unit_test(test_close_stdin_ends_a_fifo_whose_writer_stays),
        };

        return integ_run("integration-interactive", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
