/* Restart and crash recovery against real daemons and a real vsockmux-sim: vsockmuxd keeps a record
 * of every VM in <state-dir>/vms; a SIGTERM is a clean recorded stop (attached execs exit 75, the
 * processes go on), a SIGKILL loses nothing a resume guest can replay, and a new vsockmuxd on the
 * same state dir recovers every VM: file endpoints exactly once, exit codes right or reported
 * lost, never 0. A record that does not parse is moved aside; --no-record keeps none. */
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
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

#define RESTART_LINES 20000u /* each half of a writer's output */
#define RESTART_WRITERS 4u

/* `seq 1 N`, then the gate, then `seq N+1 2N`, then exit code. With first, a gate before too
 * (DIR/first): the output then flows only after every record write the execs made. */
static const char *writer_script(struct integ *t, char *buf, size_t len, unsigned code, bool first)
{
        char gate[INTEG_PATH_MAX + 64] = "";

        if (first)
                snprintf(gate, sizeof(gate), "while [ -d %s ] && [ ! -e %s/first ]; do sleep 0.05; done; ", t->dir,
                         t->dir);
        snprintf(buf, len, "%sseq 1 %u; %s; seq %u %u; exit %u", gate, RESTART_LINES, integ_wait_go(t),
                 RESTART_LINES + 1, 2 * RESTART_LINES, code);
        return buf;
}

static long exec_to_file(struct integ *t, const char *vm, const char *out, const char *script)
{
        struct integ_result res;

        integ_cli(t, &res, NULL, "exec", vm, "--detach", "--stdout", out, "--", "sh", "-c", script, NULL);
        return integ_detached_pid(t, &res);
}

/* The guest's side of a lost line: what its relay did with the connection. */
static void dump_sim_log(struct integ *t)
{
        const char *path = integ_path(t, "sim-demo.log");
        char *s = integ_read_file(path, NULL);

        fprintf(stderr, "---- vsockmux-sim log (%s) ----\n%s---- end of log ----\n", path, s ? s : "(none)\n");
        free(s);
}

/* Every number 1..n once, in order: nothing lost, nothing twice. */
static void assert_file_is_seq(struct integ *t, const char *path, unsigned n)
{
        size_t len, off = 0;
        char *got = integ_read_file(path, &len);
        char want[16];

        assert_non_null(got);
        for (unsigned i = 1; i <= n; i++) {
                int w = snprintf(want, sizeof(want), "%u\n", i);

                if (off + (size_t)w > len || memcmp(got + off, want, (size_t)w) != 0) {
                        /* fail_msg() does not return: the file goes first. */
                        free(got);
                        integ_dump_daemon_log(t);
                        dump_sim_log(t);
                        fail_msg("%s: line %u is not %u (%zu bytes, expected the sequence to %u)", path, i, i, len, n);
                }
                off += (size_t)w;
        }
        free(got);
        if (off != len)
                fail_msg("%s: %zu bytes after line %u (duplicated output?)", path, len - off, n);
}

/* `vsockmux wait VM PID`: its exit code (the process's), and its output in res. */
static int wait_code(struct integ *t, const char *vm, long pid, struct integ_result *res)
{
        char pid_s[24];

        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, res, NULL, "wait", vm, pid_s, NULL);
        return res->code;
}

static void expect_wait(struct integ *t, const char *vm, long pid, int code)
{
        struct integ_result res;

        if (wait_code(t, vm, pid, &res) != code) {
                integ_dump_daemon_log(t);
                fail_msg("wait %s %ld: exit %d, expected %d\nstdout: '%s'\nstderr: '%s'", vm, pid, res.code, code,
                         res.out, res.err);
        }
        integ_result_done(&res);
}

static void stop_daemon(struct integ *t, int sig)
{
        int code;

        assert_int_equal(kill(t->daemon, sig), 0);
        assert_int_equal(integ_reap(t, t->daemon, INTEG_WAIT_MS, &code), 0);
        t->daemon = 0;
        if (sig == SIGTERM && code != 0) {
                integ_dump_daemon_log(t);
                fail_msg("vsockmuxd exited %d on SIGTERM", code);
        }
}

static void restart(struct integ *t, char *const extra[])
{
        assert_int_equal(integ_daemon_restart(t, extra), 0);
}

/* The number of processes `ps VM --json` shows running (their pids known). */
static size_t running_count(struct integ *t, const char *vm)
{
        struct json_object *all = integ_cli_json(t, "ps", vm, "--json", NULL);
        size_t n = 0;

        for (size_t i = 0; i < json_object_array_length(all); i++) {
                struct json_object *p = json_object_array_get_idx(all, i);

                if (integ_json_int(p, "pid") > 0 && !strcmp(integ_json_str(p, "state"), "running"))
                        n++;
        }
        json_object_put(all);
        return n;
}

static void wait_running(struct integ *t, const char *vm, size_t n)
{
        for (int waited = 0; running_count(t, vm) < n; waited += 20) {
                if (waited >= INTEG_WAIT_MS)
                        fail_msg("fewer than %zu processes running in %s", n, vm);
                integ_sleep_ms(20);
        }
}

/* SIGTERM: the writer goes on while the daemon is down, the attached exec hears that vsockmuxd
 * stopped (75, not "exit status lost"), and after the restart every line is in the file once
 * and `wait` gives both real exit codes. */
static void test_sigterm_and_restart_lose_nothing(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX], cli_err[INTEG_PATH_MAX], script[512], attached[512], needle[32];
        char *args[] = { "exec", "demo", "--", "sh", "-c", attached, NULL };
        struct integ_result res;
        long pid, apid = 0;
        pid_t cli;
        int code;

        integ_vm_with_sim(t, "demo");
        snprintf(out, sizeof(out), "%s", integ_path(t, "out"));
        snprintf(cli_err, sizeof(cli_err), "%s", integ_path(t, "attached.err"));
        pid = exec_to_file(t, "demo", out, writer_script(t, script, sizeof(script), 7, false));
        snprintf(needle, sizeof(needle), "\n%u\n", RESTART_LINES);
        assert_true(integ_wait_file_contains(out, needle, INTEG_WAIT_MS));
        snprintf(attached, sizeof(attached), "%s; exit 3", integ_wait_go(t));
        cli = integ_spawn(t, integ_cli_argv(t, args), NULL, NULL, cli_err);
        wait_running(t, "demo", 2);

        stop_daemon(t, SIGTERM);
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        {
                char *err = integ_read_file(cli_err, NULL);

                assert_non_null(err);
                if (code != 75) {
                        integ_dump_daemon_log(t);
                        fail_msg("the attached exec exited %d, expected 75; stderr: '%s'", code, err);
                }
                integ_assert_contains(err, "vsockmuxd stopped");
                assert_null(strstr(err, "exit status lost"));
                if (sscanf(strstr(err, "vsockmux wait demo ") + strlen("vsockmux wait demo "), "%ld", &apid) != 1)
                        fail_msg("no pid in '%s'", err);
                free(err);
        }
        /* The rest is written while no vsockmuxd runs: the guest holds it for the redial. */
        integ_touch(integ_path(t, "go"));
        restart(t, NULL);
        assert_true(integ_wait_file_contains(t->daemon_log, "recovered 1 VMs with 2 processes", INTEG_WAIT_MS));
        expect_wait(t, "demo", pid, 7);
        expect_wait(t, "demo", apid, 3);
        assert_file_is_seq(t, out, 2 * RESTART_LINES);
        integ_cli(t, &res, NULL, "vm", "ls", NULL);
        integ_assert_code(t, &res, 0);
        integ_assert_contains(res.out, "demo");
        integ_result_done(&res);
}

/* "line 0" ... "line N-1" then "end", each once and in order, in text (changed). Returns N. */
static long check_lines_once(struct integ *t, char *text)
{
        char *line, *save = NULL;
        char want[32];
        long i = 0;

        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
                snprintf(want, sizeof(want), "line %ld", i);
                if (strcmp(line, want) == 0)
                        continue;
                if (strcmp(line, "end") == 0 && !strtok_r(NULL, "\n", &save))
                        return i;
                integ_dump_daemon_log(t);
                fail_msg("line %ld is '%s', not '%s' (lost or repeated output)", i, line, want);
        }
        integ_dump_daemon_log(t);
        fail_msg("no 'end' after %ld lines", i);
        return -1;
}

#define LOG_CAP 2048 /* --log-size-max 2K: some 40 records a file */

/* A k8s-file log with a cap across a SIGTERM and a restart: the record keeps its cap and file count,
 * so the new daemon rotates at the cap as the old one did (no file over it, with several files'
 * worth after the restart), and every line is in the files once, in order. */
static void test_sigterm_and_restart_keep_the_k8s_file_logs_cap(void **state)
{
        struct integ *t = *state;
        char log[INTEG_PATH_MAX], spec[INTEG_PATH_MAX + 16], script[INTEG_PATH_MAX * 2];
        struct integ_cri_log l;
        size_t len;
        char *all;
        long pid;

        snprintf(log, sizeof(log), "%s", integ_path(t, "c.log"));
        snprintf(spec, sizeof(spec), "k8s-file:%s", log);
        snprintf(script, sizeof(script),
                 "i=0; while [ ! -e %s ]; do echo \"line $i\"; i=$((i+1)); sleep 0.005; done; echo end; exit 7",
                 integ_path(t, "stop"));
        integ_vm_with_sim(t, "demo");
        {
                struct integ_result res;

                integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--log", spec, "--log-size-max", "2K",
                          "--log-max-files", "1000", "--", "sh", "-c", script, NULL);
                pid = integ_detached_pid(t, &res);
        }
        integ_wait_logged(t, log, LOG_CAP, LOG_CAP / 40 * 2);
        stop_daemon(t, SIGTERM);
        restart(t, NULL);
        assert_true(integ_wait_file_contains(t->daemon_log, "recovered 1 VMs with 1 processes", INTEG_WAIT_MS));
        integ_wait_logged(t, log, LOG_CAP, LOG_CAP / 40 * 3);
        integ_touch(integ_path(t, "stop"));
        expect_wait(t, "demo", pid, 7);
        all = integ_read_rotated(log, LOG_CAP, &len);
        integ_cri_log_parse_text(all, len, &l);
        free(all);
        assert_true(check_lines_once(t, l.text[0]) > LOG_CAP / 40 * 5);
        assert_string_equal(l.text[1], "");
        integ_cri_log_done(&l);
}

/* A process logging to journald across a SIGTERM and a restart: the record says so, and the new
 * daemon writes its entries with the same fields (its exec id, container id and VM), every line
 * once, in order. The writer waits for the restart before its second half: journald's socket
 * queues only max_dgram_qlen (10) entries, which the test reads between CLI calls. */
static void test_sigterm_and_restart_keep_a_journald_log(void **state)
{
        struct integ_journal *j = integ_journal_or_skip(state);
        struct integ_journal_entries all = { .n = 0 };
        char script[INTEG_PATH_MAX * 2], *text = NULL;
        struct integ_result res;
        struct integ *t;

        t = j->t;
        snprintf(script, sizeof(script),
                 "for i in 0 1 2 3 4; do echo \"line $i\"; done; until [ -e %s ]; do sleep 0.01; done; "
                 "for i in 5 6 7 8 9; do echo \"line $i\"; done; echo end; exit 7",
                 integ_path(t, "go"));
        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "journal-restart", "--log", "journald", "--", "sh",
                  "-c", script, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_journal_wait(j, &all, 4);
        stop_daemon(t, SIGTERM);
        assert_int_equal(integ_journal_restart(j, NULL), 0);
        assert_true(integ_wait_file_contains(t->daemon_log, "recovered 1 VMs with 1 processes", INTEG_WAIT_MS));
        integ_touch(integ_path(t, "go"));
        integ_cli(t, &res, NULL, "wait", "demo", "journal-restart", NULL);
        integ_assert_code(t, &res, 7);
        integ_result_done(&res);
        integ_journal_collect(j->sock, &all);
        /* Whole lines each: the writer's echoes are far below an entry's size. */
        for (unsigned i = 0; i < all.n; i++)
                assert_null(strstr(all.e[i], "\nCONTAINER_PARTIAL_MESSAGE=true\n"));
        text = integ_journal_stdout_text(t, &all, "journal-restart", "demo");
        assert_int_equal(check_lines_once(t, text), 10);
        free(text);
        integ_journal_entries_done(&all);
}

/* SIGKILL while several writers stream to files: a new daemon resumes each exactly where its
 * file ends, and a process that exited while no daemon ran is found with its code. */
static void test_sigkill_under_load_and_restart_are_exactly_once(void **state)
{
        struct integ *t = *state;
        char outs[RESTART_WRITERS][INTEG_PATH_MAX], script[512], quick[512], name[32];
        long pids[RESTART_WRITERS], qpid;
        const char *exited = integ_path(t, "quick.exited");

        integ_vm_with_sim(t, "demo");
        for (unsigned i = 0; i < RESTART_WRITERS; i++) {
                snprintf(name, sizeof(name), "out%u", i);
                snprintf(outs[i], sizeof(outs[i]), "%s", integ_path(t, name));
                pids[i] = exec_to_file(t, "demo", outs[i], writer_script(t, script, sizeof(script), 10 + i, true));
        }
        snprintf(quick, sizeof(quick), "%s; touch %s; exit 9", integ_wait_go(t), exited);
        qpid = integ_exec_detached(t, "demo", quick);
        /* The record holds every process now, with nothing delivered yet: what reaches the files
         * from here on is only in the files when the daemon dies. */
        integ_touch(integ_path(t, "first"));
        snprintf(name, sizeof(name), "\n%u\n", RESTART_LINES);
        for (unsigned i = 0; i < RESTART_WRITERS; i++)
                assert_true(integ_wait_file_contains(outs[i], name, INTEG_WAIT_MS));

        stop_daemon(t, SIGKILL);
        integ_touch(integ_path(t, "go"));
        /* It exits while nobody listens; the new daemon's probe must find it. */
        for (int waited = 0; access(exited, F_OK) < 0; waited += 20) {
                if (waited >= INTEG_WAIT_MS)
                        fail_msg("the quick process never ran to its end");
                integ_sleep_ms(20);
        }
        restart(t, NULL);
        assert_true(integ_wait_file_contains(t->daemon_log, "recovered 1 VMs", INTEG_WAIT_MS));
        expect_wait(t, "demo", qpid, 9);
        for (unsigned i = 0; i < RESTART_WRITERS; i++) {
                expect_wait(t, "demo", pids[i], 10 + (int)i);
                assert_file_is_seq(t, outs[i], 2 * RESTART_LINES);
        }
}

/* Every number 1..n at least once, none out of range: a fifo endpoint is at least once. */
static void assert_has_every_number(struct integ *t, const char *path, unsigned n)
{
        size_t len;
        char *got = integ_read_file(path, &len), *save = NULL;
        unsigned char *seen = calloc(n + 1, 1);
        unsigned missing = 0, first = 0;

        assert_non_null(got);
        assert_non_null(seen);
        for (char *l = strtok_r(got, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                unsigned long v = strtoul(l, NULL, 10);

                if (v >= 1 && v <= n)
                        seen[v] = 1;
        }
        for (unsigned i = 1; i <= n; i++)
                if (!seen[i] && missing++ == 0)
                        first = i;
        if (missing) {
                integ_dump_daemon_log(t);
                fail_msg("%s: %u of the numbers 1..%u never arrived, the first %u (%zu bytes)", path, missing, n, first,
                         len);
        }
        free(seen);
        free(got);
}

/* A fifo's reader in a process group of its own (setsid): stopping the group stops its cat too,
 * so the fifo really backs up. It opens the fifo again after each writer is gone (the daemon's
 * death). */
static pid_t fifo_reader_start(struct integ *t, const char *fifo, const char *out)
{
        char sh[INTEG_PATH_MAX * 3];
        char *argv[] = { "/usr/bin/setsid", "/bin/sh", "-c", sh, NULL };
        pid_t reader;

        snprintf(sh, sizeof(sh), "while [ -d %s ]; do cat %s >> %s; done", t->dir, fifo, out);
        reader = integ_spawn(t, argv, NULL, NULL, NULL);
        for (int waited = 0; getpgid(reader) != reader; waited += 10) {
                if (waited >= INTEG_WAIT_MS)
                        fail_msg("the fifo's reader never got a process group of its own");
                integ_sleep_ms(10);
        }
        return reader;
}

/* Pool buffers the relay holds (read from a guest, not delivered). */
static int64_t relay_buffers_held(struct integ *t)
{
        struct json_object *st = integ_cli_json(t, "stats", "--json", NULL);
        int64_t n = integ_json_int(integ_json_get(st, "buffer_pool"), "buffers_in_use");

        json_object_put(st);
        return n;
}

/* Restarts the (idle) daemon with every from-guest stream on the ring: a stalled endpoint then
 * leaves bytes in the relay's buffers, not in the guest's socket. Only its environment has it. */
static void restart_on_the_ring(struct integ *t)
{
        int r;

        stop_daemon(t, SIGTERM);
        setenv("VSOCKMUX_RELAY_SPLICE_MIN", "1048576", 1);
        r = integ_daemon_restart(t, NULL);
        unsetenv("VSOCKMUX_RELAY_SPLICE_MIN");
        assert_int_equal(r, 0);
}

#define STALLED_LINES 300000u /* ~2 MB: past the fifo, the relay's buffers and the guest's window */

/* Bytes wait in the fifo that its stopped reader does not take: the bulk is flowing and stalls. */
static void expect_the_fifo_backs_up(const char *fifo)
{
        int fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC), queued = 0;

        assert_true(fd >= 0);
        for (int waited = 0; ioctl(fd, FIONREAD, &queued) == 0 && queued == 0; waited += 10) {
                if (waited >= INTEG_WAIT_MS)
                        fail_msg("the fifo never backed up");
                integ_sleep_ms(10);
        }
        assert_true(queued > 0);
        close(fd);
}

/* SIGKILL while a fifo's reader is stopped and the stream backs up. Returns the exec's pid; the
 * reader's group is still stopped and the new daemon not started. First waits until the relay
 * holds `held` pool buffers (0: does not wait); with `record`, has the record written then. */
static long kill_with_a_stalled_fifo(struct integ *t, const char *fifo, const char *out, int64_t held, bool record,
                                     pid_t *ret_reader)
{
        char script[INTEG_PATH_MAX * 2];
        struct stat st;
        long pid, other;
        pid_t reader;

        integ_vm_with_sim(t, "demo");
        assert_int_equal(mkfifo(fifo, 0600), 0);
        reader = fifo_reader_start(t, fifo, out);
        /* The bulk waits for the reader's stop: it would otherwise all pass before that. */
        snprintf(script, sizeof(script), "seq 1 100; %s; seq 101 %u; exit 6", integ_wait_go(t), STALLED_LINES);
        pid = exec_to_file(t, "demo", fifo, script);
        /* Some output is in: stop the reader so the stream backs up. */
        for (int waited = 0; stat(out, &st) < 0 || st.st_size == 0; waited += 10) {
                if (waited >= INTEG_WAIT_MS)
                        fail_msg("nothing reached the fifo");
                integ_sleep_ms(10);
        }
        assert_int_equal(kill(-reader, SIGSTOP), 0);
        integ_touch(integ_path(t, "go"));
        expect_the_fifo_backs_up(fifo);
        for (int waited = 0, now = 0; held > 0 && (now = (int)relay_buffers_held(t)) < held; waited += 50) {
                if (waited >= INTEG_WAIT_MS)
                        fail_msg("the relay holds %d pool buffers, not %d", now, (int)held);
                integ_sleep_ms(50);
        }
        if (record) {
                /* A change writes the record while bytes are held: another exec. */
                other = integ_exec_detached(t, "demo", "exit 0");
                expect_wait(t, "demo", other, 0);
        }
        stop_daemon(t, SIGKILL);
        *ret_reader = reader;
        return pid;
}

/* After the restart every line reached the fifo at least once and the exit code is right. */
static void expect_every_line_at_the_fifo(struct integ *t, long pid, const char *out, pid_t reader)
{
        char last[32];

        assert_int_equal(kill(-reader, SIGCONT), 0);
        restart(t, NULL);
        expect_wait(t, "demo", pid, 6);
        /* The exit is reported once the output drained into the fifo: the reader has it all once
         * the daemon closed its end. */
        snprintf(last, sizeof(last), "\n%u\n", STALLED_LINES);
        assert_true(integ_wait_file_contains(out, last, INTEG_WAIT_MS));
        assert_has_every_number(t, out, STALLED_LINES);
        (void)kill(-reader, SIGKILL);
}

/* SIGKILL while a fifo's reader is stopped: the guest kept what the record says reached the fifo
 * and resumes there: at least once, nothing lost (README: a fifo endpoint after a SIGKILL). */
static void test_sigkill_with_bytes_buffered_loses_nothing_at_a_fifo(void **state)
{
        struct integ *t = *state;
        char fifo[INTEG_PATH_MAX], out[INTEG_PATH_MAX];
        pid_t reader;
        long pid;

        snprintf(fifo, sizeof(fifo), "%s", integ_path(t, "fifo"));
        snprintf(out, sizeof(out), "%s", integ_path(t, "fifo.out"));
        pid = kill_with_a_stalled_fifo(t, fifo, out, 0, true, &reader);
        expect_every_line_at_the_fifo(t, pid, out, reader);
}

/* The same with the stream on the ring, where the dead daemon held bytes it had read but not
 * delivered: the guest freed only what our delivery acks said reached the fifo, so nothing is lost.
 * (The acks also keep what the relay holds within the guest's 128 KiB window: a guest sends no more
 * than that beyond the last count.) */
static void test_sigkill_with_bytes_held_by_the_relay_loses_nothing_at_a_fifo(void **state)
{
        struct integ *t = *state;
        char fifo[INTEG_PATH_MAX], out[INTEG_PATH_MAX];
        pid_t reader;
        long pid;

        restart_on_the_ring(t);
        snprintf(fifo, sizeof(fifo), "%s", integ_path(t, "fifo"));
        snprintf(out, sizeof(out), "%s", integ_path(t, "fifo.out"));
        pid = kill_with_a_stalled_fifo(t, fifo, out, 1, true, &reader);
        expect_every_line_at_the_fifo(t, pid, out, reader);
}

/* The record was last written at the exec, long before what reached the fifo: the guest goes on
 * from its last delivery ack, not from the record, so a fifo gets again only what came after that
 * ack: at most 32 KiB, plus what the daemon was writing when it died (bounded by the fifo's
 * capacity, its reader being stopped). */
static void test_sigkill_after_an_old_record_repeats_only_the_unacked_tail_at_a_fifo(void **state)
{
        struct integ *t = *state;
        char fifo[INTEG_PATH_MAX], out[INTEG_PATH_MAX];
        size_t len = 0, lines = 0, fifo_cap;
        pid_t reader;
        long pid;
        int fd;

        restart_on_the_ring(t);
        snprintf(fifo, sizeof(fifo), "%s", integ_path(t, "fifo"));
        snprintf(out, sizeof(out), "%s", integ_path(t, "fifo.out"));
        pid = kill_with_a_stalled_fifo(t, fifo, out, 1, false, &reader);
        fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(fd >= 0);
        fifo_cap = (size_t)fcntl(fd, F_GETPIPE_SZ);
        close(fd);
        expect_every_line_at_the_fifo(t, pid, out, reader);
        free(integ_read_file(out, &len));
        for (unsigned i = 1; i <= STALLED_LINES; i++)
                lines += (size_t)snprintf(NULL, 0, "%u\n", i);
        fprintf(stderr, "%zu bytes came twice\n", len - lines);
        if (len > lines + 32 * 1024 + fifo_cap)
                fail_msg("%zu bytes came twice: more than the 32 KiB between two acks and the fifo's %zu", len - lines,
                         fifo_cap);
}

/* What the acks prevent (the simulator with --no-ack: resume, freeing its window by what the host
 * read): the relay fills up to its 512 KiB cap, and with four 64 KiB buffers held (twice the
 * guest's window) what lay beyond the window is gone; the guest says so. */
static void test_sigkill_with_bytes_held_by_the_relay_without_acks_loses_output(void **state)
{
        struct integ *t = *state;
        char fifo[INTEG_PATH_MAX], out[INTEG_PATH_MAX], sim_log[INTEG_PATH_MAX];
        pid_t reader;

        restart_on_the_ring(t);
        snprintf(fifo, sizeof(fifo), "%s", integ_path(t, "fifo"));
        snprintf(out, sizeof(out), "%s", integ_path(t, "fifo.out"));
        snprintf(sim_log, sizeof(sim_log), "%s", integ_path(t, "sim-demo.log"));
        (void)kill_with_a_stalled_fifo(t, fifo, out, 4, true, &reader);
        assert_int_equal(kill(-reader, SIGCONT), 0);
        restart(t, NULL);
        if (!integ_wait_file_contains(sim_log, "OUTPUT LOST", INTEG_WAIT_MS)) {
                integ_dump_daemon_log(t);
                fail_msg("the guest without acks lost nothing: the test cannot tell acks from none");
        }
        (void)kill(-reader, SIGKILL);
}

/* The guest forgot the process while no daemon ran (a new guest): its exit is reported lost, never
 * as 0. */
static void test_exit_that_cannot_be_known_is_reported_lost(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        pid_t sim;
        long pid;

        sim = integ_vm_with_sim(t, "demo");
        pid = integ_exec_detached(t, "demo", integ_alive_loop(t));
        stop_daemon(t, SIGKILL);
        integ_kill(t, sim, SIGKILL);
        restart(t, NULL);
        (void)integ_sim_start(t, "demo");
        if (wait_code(t, "demo", pid, &res) != 255) {
                integ_dump_daemon_log(t);
                fail_msg("wait: exit %d, expected 255 (lost)\nstdout: '%s'\nstderr: '%s'", res.code, res.out, res.err);
        }
        integ_assert_contains(res.out, "lost");
        integ_result_done(&res);
}

/* A record that does not parse is moved aside with a log line; the others still come back. */
static void test_corrupt_record_is_moved_aside(void **state)
{
        struct integ *t = *state;
        char bad[INTEG_PATH_MAX], aside[INTEG_PATH_MAX + 8];
        struct stat st;
        long pid;
        int fd;

        integ_vm_with_sim(t, "demo");
        pid = integ_exec_detached(t, "demo", "exit 4");
        expect_wait(t, "demo", pid, 4);
        stop_daemon(t, SIGTERM);
        snprintf(bad, sizeof(bad), "%s/vms/broken.state", t->state_dir);
        snprintf(aside, sizeof(aside), "%s.bad", bad);
        fd = open(bad, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "not a record", 12), 12);
        close(fd);
        restart(t, NULL);
        assert_true(integ_wait_file_contains(t->daemon_log, "does not parse", INTEG_WAIT_MS));
        assert_true(integ_wait_file_contains(t->daemon_log, "moved aside", INTEG_WAIT_MS));
        assert_int_equal(stat(bad, &st), -1);
        assert_int_equal(stat(aside, &st), 0);
        expect_wait(t, "demo", pid, 4);
}

/* --no-record: today's behaviour, nothing in the state dir and nothing after a restart. */
static void test_no_record_keeps_nothing(void **state)
{
        struct integ *t = *state;
        char *extra[] = { "--no-record", NULL };
        char vms[INTEG_PATH_MAX + 8];
        struct integ_result res;
        struct stat st;

        stop_daemon(t, SIGTERM);
        /* The first daemon (with a record) made the directory: start clean. */
        snprintf(vms, sizeof(vms), "%s/vms", t->state_dir);
        (void)rmdir(vms);
        restart(t, extra);
        integ_vm_with_sim(t, "demo");
        (void)integ_exec_detached(t, "demo", integ_alive_loop(t));
        assert_int_equal(stat(vms, &st), -1);
        stop_daemon(t, SIGTERM);
        restart(t, extra);
        integ_cli(t, &res, NULL, "ps", "demo", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "unknown VM");
        integ_result_done(&res);
}

/* The number of processes `ps VM --json` lists, whatever their state. */
static size_t process_count(struct integ *t, const char *vm)
{
        struct json_object *all = integ_cli_json(t, "ps", vm, "--json", NULL);
        size_t n = json_object_array_length(all);

        json_object_put(all);
        return n;
}

#define CHURN_LOOPS 4u
#define CHURN_EXECS 120u /* per loop: 480 processes, past journal compactions (16 KiB at least) */
#define CHURN_KILL_AT 240u

/* One client's exec churn: CHURN_EXECS execs one after the other, every other one exiting at
 * once, the rest 2 s later; each whose pid came back (durable by then) goes to out as "pid code". */
static pid_t churn_start(struct integ *t, unsigned loop, const char *out)
{
        char sh[INTEG_PATH_MAX * 4];
        char *argv[] = { "/bin/sh", "-c", sh, NULL };

        snprintf(sh, sizeof(sh),
                 "i=0; while [ $i -lt %u ]; do c=$(( (%u * 31 + i) %% 90 + 1 )); s=\"exit $c\"; "
                 "if [ $((i %% 2)) -eq 1 ]; then c=$((c + 100)); s=\"sleep 2; exit $c\"; fi; "
                 "p=$(%s --socket %s exec demo --detach -- sh -c \"$s\" 2>/dev/null) && echo \"$p $c\" >> %s; "
                 "i=$((i + 1)); done",
                 CHURN_EXECS, loop, t->cfg->cli, t->sock, out);
        return integ_spawn(t, argv, NULL, NULL, NULL);
}

static size_t count_lines(const char *path)
{
        size_t len, n = 0;
        char *got = integ_read_file(path, &len);

        for (size_t i = 0; got && i < len; i++)
                n += got[i] == '\n';
        free(got);
        return n;
}

/* `wait VM PID` gives code, or the guest lost the exit: it answered the wait of a process that had
 * exited to the daemon that then died, and forgot it (hcsshim's guest does too). A process the
 * record forgot would be not found instead. Returns whether it was lost. */
static bool expect_wait_or_lost(struct integ *t, const char *vm, long pid, int code)
{
        struct integ_result res;
        bool lost;

        wait_code(t, vm, pid, &res);
        lost = res.code == 255 && strstr(res.out, "exit status lost") != NULL;
        if (res.code != code && !lost) {
                integ_dump_daemon_log(t);
                fail_msg("wait %s %ld: exit %d, expected %d\nstdout: '%s'\nstderr: '%s'", vm, pid, res.code, code,
                         res.out, res.err);
        }
        integ_result_done(&res);
        return lost;
}

/* SIGKILL in the middle of exec churn, hundreds of processes in the VM and its journal compacted
 * on the way: the new daemon knows every process whose pid a client got, with its exit code (or
 * the guest's word that it was lost, for exits it sent the dead daemon). */
static void test_sigkill_mid_exec_churn_recovers_every_recorded_process(void **state)
{
        struct integ *t = *state;
        char outs[CHURN_LOOPS][INTEG_PATH_MAX], name[32], journal[INTEG_PATH_MAX + 16], snapshot[INTEG_PATH_MAX + 16];
        struct stat st;
        pid_t loops[CHURN_LOOPS];
        size_t total = 0, lost = 0;
        int code;

        integ_vm_with_sim(t, "demo");
        for (unsigned l = 0; l < CHURN_LOOPS; l++) {
                snprintf(name, sizeof(name), "churn%u", l);
                snprintf(outs[l], sizeof(outs[l]), "%s", integ_path(t, name));
                loops[l] = churn_start(t, l, outs[l]);
        }
        for (int waited = 0; total < CHURN_KILL_AT; waited += 20) {
                if (waited >= INTEG_WAIT_MS)
                        fail_msg("only %zu execs answered", total);
                integ_sleep_ms(20);
                total = 0;
                for (unsigned l = 0; l < CHURN_LOOPS; l++)
                        total += count_lines(outs[l]);
        }
        stop_daemon(t, SIGKILL);
        /* A snapshot holding processes: the journal outgrew the first one (no process) on the way. */
        snprintf(journal, sizeof(journal), "%s/vms/demo.journal", t->state_dir);
        assert_int_equal(access(journal, F_OK), 0);
        snprintf(snapshot, sizeof(snapshot), "%s/vms/demo.state", t->state_dir);
        assert_int_equal(stat(snapshot, &st), 0);
        assert_true(st.st_size > 4096);
        /* With no daemon the rest of each loop fails fast. */
        for (unsigned l = 0; l < CHURN_LOOPS; l++)
                assert_int_equal(integ_reap(t, loops[l], INTEG_WAIT_MS, &code), 0);
        restart(t, NULL);
        assert_true(integ_wait_file_contains(t->daemon_log, "recovered 1 VMs", INTEG_WAIT_MS));
        /* The record held every exit it knew, and lost none itself. */
        assert_true(integ_wait_file_contains(t->daemon_log, "(0 exits found lost;", INTEG_WAIT_MS));
        total = 0;
        for (unsigned l = 0; l < CHURN_LOOPS; l++) {
                size_t len;
                char *got = integ_read_file(outs[l], &len), *save = NULL;

                assert_non_null(got);
                for (char *line = strtok_r(got, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                        long pid, c;

                        assert_int_equal(sscanf(line, "%ld %ld", &pid, &c), 2);
                        lost += expect_wait_or_lost(t, "demo", pid, (int)c);
                        total++;
                }
                free(got);
        }
        assert_true(total >= CHURN_KILL_AT);
        /* Half exit 2 s after they start, most after the SIGKILL: the guest keeps those. */
        if (lost >= total / 2)
                fail_msg("%zu of %zu exits lost", lost, total);
}

static bool record_file_exists(struct integ *t, const char *vm, const char *suffix)
{
        char path[INTEG_PATH_MAX + 64];

        snprintf(path, sizeof(path), "%s/vms/%s.%s", t->state_dir, vm, suffix);
        return access(path, F_OK) == 0;
}

/* A saved VM's record is the destination's: both files go before the blob reaches the client.
 * A removed VM's go too, through the writer. */
static void test_save_and_rm_remove_snapshot_and_journal(void **state)
{
        struct integ *t = *state;
        struct integ_result res;

        integ_vm_with_sim(t, "demo");
        integ_vm_with_sim(t, "two");
        expect_wait(t, "demo", integ_exec_detached(t, "demo", "exit 3"), 3);
        expect_wait(t, "two", integ_exec_detached(t, "two", "exit 4"), 4);
        assert_true(record_file_exists(t, "demo", "state"));
        assert_true(record_file_exists(t, "demo", "journal"));
        assert_true(record_file_exists(t, "two", "journal"));
        integ_cli(t, &res, NULL, "save", "demo", "--out", integ_path(t, "demo.blob"), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        assert_false(record_file_exists(t, "demo", "state"));
        assert_false(record_file_exists(t, "demo", "journal"));
        integ_cli(t, &res, NULL, "vm", "rm", "two", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        for (int waited = 0; record_file_exists(t, "two", "state") || record_file_exists(t, "two", "journal");
             waited += 20) {
                if (waited >= INTEG_WAIT_MS)
                        fail_msg("the removed VM's record is still there");
                integ_sleep_ms(20);
        }
}

/* An exec's pid is answered only once its record is durable: a ctrl-c before that is held and
 * forwarded with the pid, never lost (and the CLI does not leave the process running). The guest
 * connects only after the ctrl-c, so the exec is surely still starting when it comes. */
static void test_ctrl_c_before_the_pid_is_held_and_forwarded(void **state)
{
        struct integ *t = *state;
        char err[INTEG_PATH_MAX], script[512];
        char *args[] = { "exec", "demo", "--", "sh", "-c", script, NULL };
        struct json_object *all;
        struct integ_result res;
        pid_t cli;
        int code;

        integ_cli(t, &res, NULL, "vm", "add", "demo", "--hvsock", integ_hvsock(t, "demo"), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        snprintf(err, sizeof(err), "%s", integ_path(t, "cli.err"));
        snprintf(script, sizeof(script), "%s", integ_alive_loop(t));
        cli = integ_spawn(t, integ_cli_argv(t, args), NULL, NULL, err);
        for (int waited = 0; process_count(t, "demo") < 1; waited += 20) {
                if (waited >= INTEG_WAIT_MS)
                        fail_msg("the exec never reached the daemon");
                integ_sleep_ms(20);
        }
        assert_int_equal(kill(cli, SIGINT), 0);
        (void)integ_sim_start(t, "demo");
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        {
                char *text = integ_read_file(err, NULL);

                assert_non_null(text);
                if (strstr(text, "may still run"))
                        fail_msg("the CLI gave up instead of forwarding the ctrl-c: '%s'", text);
                free(text);
        }
        /* The process got it: SIGINT ended it (130, as a local ctrl-c would). */
        assert_int_equal(code, 130);
        all = integ_cli_json(t, "ps", "demo", "--json", NULL);
        assert_int_equal(json_object_array_length(all), 1);
        assert_string_not_equal(integ_json_str(json_object_array_get_idx(all, 0), "state"), "running");
        json_object_put(all);
}

/* hcsshim's guest (--fidelity upstream) redials only a container's init: with its writer as the
 * init, stopped while it waits (nothing in flight: the guest saw the connection end first), every
 * line arrives once and its exit code comes from the reconnect probe. Another exec in the
 * container is not redialled and hcsshim's guest may forget its exit: its code is right or lost,
 * never 0. */
static void upstream_stop_and_restart(struct integ *t, int sig)
{
        char out[INTEG_PATH_MAX], script[512], needle[32], other[512], lost[64];
        struct integ_result res;
        long pid, opid;
        int code;

        /* The exits come while no daemon holds the bridge, each with the wait vsockmuxd left in the
         * guest: hcsshim's guest panics at the first answer and its VM stops (sim/bridge.c). What
         * is tested is the daemon's side of a guest that lives on. */
        t->no_bridge_panic = true;
        integ_vm_with_sim(t, "demo");
        integ_cli(t, &res, NULL, "container", "create", "demo", "c1", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        snprintf(out, sizeof(out), "%s", integ_path(t, "out"));
        writer_script(t, script, sizeof(script), 7, false);
        integ_cli(t, &res, NULL, "exec", "demo", "--container", "c1", "--detach", "--stdout", out, "--", "sh", "-c",
                  script, NULL);
        integ_assert_code(t, &res, 0);
        pid = strtol(res.out, NULL, 10);
        integ_result_done(&res);
        snprintf(other, sizeof(other), "%s; exit 3", integ_wait_go(t));
        integ_cli(t, &res, NULL, "exec", "demo", "--container", "c1", "--detach", "--", "sh", "-c", other, NULL);
        integ_assert_code(t, &res, 0);
        opid = strtol(res.out, NULL, 10);
        integ_result_done(&res);
        snprintf(needle, sizeof(needle), "\n%u\n", RESTART_LINES);
        assert_true(integ_wait_file_contains(out, needle, INTEG_WAIT_MS));

        stop_daemon(t, sig);
        /* Nothing in flight is the guest's view: the go waits until the init's stdout has seen its
         * connection end. A reaped vsockmuxd's sockets outlive it until the kernel tears its
         * io_uring down (later under load); what the guest writes into them meanwhile dies with
         * them, and hcsshim's guest goes on after it without a replay. */
        snprintf(lost, sizeof(lost), "pid %ld stdout: connection lost", pid);
        if (!integ_wait_file_contains(integ_path(t, "sim-demo.log"), lost, INTEG_WAIT_MS)) {
                dump_sim_log(t);
                fail_msg("the guest never saw the stopped daemon's stdout connection end");
        }
        integ_touch(integ_path(t, "go"));
        restart(t, NULL);
        assert_true(integ_wait_file_contains(t->daemon_log, "recovered 1 VMs with 2 processes", INTEG_WAIT_MS));
        expect_wait(t, "demo", pid, 7);
        assert_file_is_seq(t, out, 2 * RESTART_LINES);
        code = wait_code(t, "demo", opid, &res);
        if (code != 3 && code != 255)
                fail_msg("the other exec's wait: exit %d, expected 3 or lost (255)\nstdout: '%s'", code, res.out);
        fprintf(stderr, "upstream: the container's other exec after the %s: %s", sig == SIGTERM ? "SIGTERM" : "SIGKILL",
                res.out);
        integ_result_done(&res);
}

static void test_upstream_sigterm_container_init_goes_on(void **state)
{
        upstream_stop_and_restart(*state, SIGTERM);
}

static void test_upstream_sigkill_container_init_goes_on(void **state)
{
        upstream_stop_and_restart(*state, SIGKILL);
}

int main(int argc, char **argv)
{
        struct CMUnitTest upstream[] = {
                cmocka_unit_test(test_upstream_sigterm_container_init_goes_on),
                cmocka_unit_test(test_upstream_sigkill_container_init_goes_on),
                cmocka_unit_test(test_corrupt_record_is_moved_aside),
                cmocka_unit_test(test_no_record_keeps_nothing),
        };
        /* Our guest with resume but without delivery acks: what the acks are for. */
        struct CMUnitTest no_ack[] = {
                cmocka_unit_test(test_sigkill_with_bytes_held_by_the_relay_without_acks_loses_output),
        };
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sigterm_and_restart_lose_nothing),
                cmocka_unit_test(test_sigterm_and_restart_keep_the_k8s_file_logs_cap),
                cmocka_unit_test_setup_teardown(test_sigterm_and_restart_keep_a_journald_log, integ_journal_setup,
                                                integ_journal_teardown),
                cmocka_unit_test(test_sigkill_under_load_and_restart_are_exactly_once),
                cmocka_unit_test(test_sigkill_mid_exec_churn_recovers_every_recorded_process),
                cmocka_unit_test(test_save_and_rm_remove_snapshot_and_journal),
                cmocka_unit_test(test_exit_that_cannot_be_known_is_reported_lost),
                cmocka_unit_test(test_sigkill_with_bytes_buffered_loses_nothing_at_a_fifo),
                cmocka_unit_test(test_sigkill_with_bytes_held_by_the_relay_loses_nothing_at_a_fifo),
                cmocka_unit_test(test_sigkill_after_an_old_record_repeats_only_the_unacked_tail_at_a_fifo),
                cmocka_unit_test(test_corrupt_record_is_moved_aside),
                cmocka_unit_test(test_no_record_keeps_nothing),
                cmocka_unit_test(test_ctrl_c_before_the_pid_is_held_and_forwarded),
        };

        /* hcsshim's guest redials no exec's stdio and resumes nothing: the tests above need our
         * guest; these show what that guest keeps. */
        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--upstream"))
                        return integ_run("integ-restart-upstream", upstream, sizeof(upstream) / sizeof(upstream[0]),
                                         argc, argv);
        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--no-ack"))
                        return integ_run("integ-restart-no-ack", no_ack, sizeof(no_ack) / sizeof(no_ack[0]), argc,
                                         argv);
        return integ_run("integ-restart", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
