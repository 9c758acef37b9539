/* stdin across a vsockmuxd stop: a process reading a multi-MB --stdin file goes on after a SIGKILL
 * or a SIGTERM and a restart on the same state dir, and gets every byte once, with the stdin end
 * confirmation (VsockmuxStdinEof) agreed. Without it (vsockmux-sim --no-stdin-eof, and hcsshim's
 * guest) the guest takes the dead daemon's close for stdin's end: the plain upstream case. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "harness.h"

#define INPUT_BYTES (5500u * 1024u) /* more than every buffer between the file and the process */
#define FIRST_BYTES 1000000u        /* what the process reads before it waits for the test */

static void write_input(const char *path)
{
        FILE *f = fopen(path, "we");
        uint64_t x = 0x9e3779b97f4a7c15ull;

        assert_non_null(f);
        for (size_t i = 0; i < INPUT_BYTES; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                assert_int_not_equal(fputc((int)(x & 0xff), f), EOF);
        }
        assert_int_equal(fclose(f), 0);
}

static size_t file_size(const char *path)
{
        struct stat st;

        return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* `exec --detach --stdin IN`: the process copies FIRST_BYTES of its stdin, waits for "go", copies
 * the rest to COPY and exits 7. */
static long start_reader(struct integ *t, const char *in, const char *copy)
{
        char script[1024];
        struct integ_result res;

        snprintf(script, sizeof(script), "{ dd bs=%u count=1 iflag=fullblock 2>/dev/null; %s; cat; } > %s; exit 7",
                 FIRST_BYTES, integ_wait_go(t), copy);
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--stdin", in, "--", "sh", "-c", script, NULL);
        return integ_detached_pid(t, &res);
}

static void wait_size(struct integ *t, const char *path, size_t n)
{
        for (int waited = 0; file_size(path) < n; waited += 20) {
                if (waited >= INTEG_WAIT_MS) {
                        integ_dump_daemon_log(t);
                        fail_msg("%s: %zu bytes, expected %zu", path, file_size(path), n);
                }
                integ_sleep_ms(20);
        }
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

/* `vsockmux wait demo PID`'s exit code. */
static int wait_code(struct integ *t, long pid)
{
        struct integ_result res;
        char pid_s[24];
        int code;

        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        code = res.code;
        integ_result_done(&res);
        return code;
}

/* The reader is mid-way through its stdin when the daemon stops; a new one recovers the VM, then
 * the reader goes on. */
static void stop_mid_stdin_and_restart(struct integ *t, int sig, long *ret_pid)
{
        char in[INTEG_PATH_MAX], copy[INTEG_PATH_MAX];

        snprintf(in, sizeof(in), "%s", integ_path(t, "in"));
        snprintf(copy, sizeof(copy), "%s", integ_path(t, "copy"));
        write_input(in);
        integ_vm_with_sim(t, "demo");
        *ret_pid = start_reader(t, in, copy);
        wait_size(t, copy, FIRST_BYTES);

        stop_daemon(t, sig);
        assert_int_equal(integ_daemon_restart(t, NULL), 0);
        assert_true(integ_wait_file_contains(t->daemon_log, "recovered 1 VMs with 1 processes", INTEG_WAIT_MS));
        integ_touch(integ_path(t, "go"));
}

/* Compares the copy with the input: its bytes are the input's first ones; returns its length. */
static size_t copied_prefix(struct integ *t)
{
        size_t len_in, len_copy;
        char *in = integ_read_file(integ_path(t, "in"), &len_in);
        char *copy = integ_read_file(integ_path(t, "copy"), &len_copy);

        assert_non_null(in);
        assert_non_null(copy);
        if (len_copy > len_in || memcmp(in, copy, len_copy) != 0) {
                size_t i = 0;

                while (i < len_copy && i < len_in && in[i] == copy[i])
                        i++;
                integ_dump_daemon_log(t);
                fail_msg("the copy (%zu bytes) differs from the input (%zu bytes) at byte %zu", len_copy, len_in, i);
        }
        free(in);
        free(copy);
        return len_copy;
}

static void expect_every_byte_once(struct integ *t, int sig)
{
        long pid;
        int code;
        size_t n;

        stop_mid_stdin_and_restart(t, sig, &pid);
        code = wait_code(t, pid);
        n = copied_prefix(t);
        if (code != 7 || n != INPUT_BYTES) {
                integ_dump_daemon_log(t);
                fail_msg("after the %s: exit %d (expected 7), %zu of %u stdin bytes",
                         sig == SIGKILL ? "SIGKILL" : "SIGTERM", code, n, INPUT_BYTES);
        }
}

static void test_sigkill_mid_stdin_file_and_restart_deliver_every_byte_once(void **state)
{
        expect_every_byte_once(*state, SIGKILL);
}

static void test_sigterm_mid_stdin_file_and_restart_deliver_every_byte_once(void **state)
{
        expect_every_byte_once(*state, SIGTERM);
}

/* A fifo stdin fed by a writer that keeps it open across the stop, read by a process that keeps
 * reading: a SIGTERM's flush sends the guest what the relay held, the new daemon opens the fifo
 * again, and nothing is lost or repeated. */
static void test_sigterm_with_a_fifo_stdin_read_on_loses_nothing(void **state)
{
        struct integ *t = *state;
        char in[INTEG_PATH_MAX], fifo[INTEG_PATH_MAX], copy[INTEG_PATH_MAX], chunk[INTEG_PATH_MAX];
        char feed[2 * INTEG_PATH_MAX + 32], script[6 * INTEG_PATH_MAX];
        char *argv[] = { "/bin/sh", "-c", feed, NULL };
        struct integ_result res;
        long pid;
        int code;

        snprintf(in, sizeof(in), "%s", integ_path(t, "in"));
        snprintf(fifo, sizeof(fifo), "%s", integ_path(t, "fifo"));
        snprintf(copy, sizeof(copy), "%s", integ_path(t, "copy"));
        snprintf(chunk, sizeof(chunk), "%s", integ_path(t, "chunk"));
        write_input(in);
        assert_int_equal(mkfifo(fifo, 0600), 0);
        integ_vm_with_sim(t, "demo");
        /* 64 KiB every 20 ms: still reading when the daemon stops, and all through its flush. */
        snprintf(script, sizeof(script),
                 ": > %s; while dd bs=65536 count=1 iflag=fullblock of=%s 2>/dev/null && [ -s %s ]; do "
                 "cat %s >> %s; sleep 0.02; done; exit 7",
                 copy, chunk, chunk, chunk, copy);
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--stdin", fifo, "--", "sh", "-c", script, NULL);
        pid = integ_detached_pid(t, &res);
        /* Held open read-write too, as containerd holds its fifos: with no daemon reading, the
         * writer blocks on a full fifo instead of dying of SIGPIPE (a fifo's own rule). */
        snprintf(feed, sizeof(feed), "exec 3<>%s; cat %s >&3", fifo, in);
        integ_spawn(t, argv, NULL, NULL, NULL);
        wait_size(t, copy, FIRST_BYTES);
        stop_daemon(t, SIGTERM);
        assert_int_equal(integ_daemon_restart(t, NULL), 0);
        code = wait_code(t, pid);
        if (code != 7 || copied_prefix(t) != INPUT_BYTES) {
                integ_dump_daemon_log(t);
                fail_msg("after the SIGTERM: exit %d (expected 7), %zu of %u stdin bytes", code, copied_prefix(t),
                         INPUT_BYTES);
        }
}

/* The plain upstream case: the guest reads the stop as stdin's end. The process still ends (its
 * code, or with hcsshim's guest an exec's code it forgot: lost, never 0) with a short input. */
static void expect_stdin_ended_early(struct integ *t, int sig)
{
        long pid;
        int code;
        size_t n;

        /* The stdin's end comes with no daemon up, and the process's exit with it: hcsshim's guest
         * panics at the answer to the wait vsockmuxd left and its VM stops (sim/bridge.c). What is
         * tested is the input a guest that lives on gave the process. */
        t->no_bridge_panic = true;
        stop_mid_stdin_and_restart(t, sig, &pid);
        code = wait_code(t, pid);
        n = copied_prefix(t);
        fprintf(stderr, "without the stdin end confirmation, after the %s: exit %d, %zu of %u stdin bytes\n",
                sig == SIGKILL ? "SIGKILL" : "SIGTERM", code, n, INPUT_BYTES);
        if (!(code == 7 || (t->cfg->upstream && code == 255)))
                fail_msg("exit %d, expected 7%s", code, t->cfg->upstream ? " or lost (255)" : "");
        assert_true(n >= FIRST_BYTES);
        assert_true(n < INPUT_BYTES);
}

static void test_upstream_case_sigkill_ends_stdin_early(void **state)
{
        expect_stdin_ended_early(*state, SIGKILL);
}

static void test_upstream_case_sigterm_ends_stdin_early(void **state)
{
        expect_stdin_ended_early(*state, SIGTERM);
}

int main(int argc, char **argv)
{
        struct CMUnitTest confirmed[] = {
                cmocka_unit_test(test_sigkill_mid_stdin_file_and_restart_deliver_every_byte_once),
                cmocka_unit_test(test_sigterm_mid_stdin_file_and_restart_deliver_every_byte_once),
                cmocka_unit_test(test_sigterm_with_a_fifo_stdin_read_on_loses_nothing),
        };
        struct CMUnitTest plain[] = {
                cmocka_unit_test(test_upstream_case_sigkill_ends_stdin_early),
                cmocka_unit_test(test_upstream_case_sigterm_ends_stdin_early),
        };

        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--upstream") || !strcmp(argv[i], "--no-stdin-eof"))
                        return integ_run(!strcmp(argv[i], "--upstream") ? "integ-stdin-restart-upstream"
                                                                        : "integ-stdin-restart-no-stdin-eof",
                                         plain, sizeof(plain) / sizeof(plain[0]), argc, argv);
        return integ_run("integ-stdin-restart", confirmed, sizeof(confirmed) / sizeof(confirmed[0]), argc, argv);
}
