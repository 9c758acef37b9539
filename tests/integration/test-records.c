/* Process records against a real vsockmuxd and simulated guest: exec ids (idempotent Exec, the
 * daemon's own ids), a deadline that passes before the exec reached the guest (the one after is
 * tests/daemon/test-save-restore.c's: a CLI cannot time it), Delete (`vsockmux rm`) and NOT_FOUND
 * for pids and ids the VM never knew. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

/* The entry of `ps VM --json` with this exec id, or NULL; *ret_all holds it (put it after). */
static struct json_object *ps_find_id(struct integ *t, const char *vm, const char *id, struct json_object **ret_all)
{
        struct json_object *all = integ_cli_json(t, "ps", vm, "--json", NULL);

        *ret_all = all;
        for (size_t i = 0; i < json_object_array_length(all); i++) {
                struct json_object *p = json_object_array_get_idx(all, i);

                if (strcmp(integ_json_str(p, "id"), id) == 0)
                        return p;
        }
        return NULL;
}

/* How many times needle occurs in the file (0 if it is missing). */
static unsigned count_in_file(const char *path, const char *needle)
{
        char *s = integ_read_file(path, NULL);
        unsigned n = 0;

        for (const char *at = s; at && (at = strstr(at, needle)); at += strlen(needle))
                n++;
        free(s);
        return n;
}

static void expect_not_found(struct integ *t, const char *verb, const char *target, const char *needle)
{
        struct integ_result res;

        integ_cli(t, &res, NULL, verb, "demo", target, NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, needle);
        integ_assert_contains(res.err, "(NOT_FOUND)");
        integ_result_done(&res);
}

static void test_unknown_pid_or_id_is_not_found_for_every_method(void **state)
{
        struct integ *t = *state;
        static const char *const verbs[] = { "kill", "wait", "attach", "rm" };

        integ_vm_with_sim(t, "demo");
        for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
                expect_not_found(t, verbs[i], "99999", "no process 99999");
                /* attach takes only a pid on the command line (its id form is in the API). */
                if (strcmp(verbs[i], "attach") != 0)
                        expect_not_found(t, verbs[i], "never-was", "no exec id 'never-was'");
        }
}

static void test_exec_id_repeated_returns_the_same_process_and_runs_it_once(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *all, *p;
        char script[512], marker[INTEG_PATH_MAX];
        long pid1, pid2;

        integ_vm_with_sim(t, "demo");
        snprintf(marker, sizeof(marker), "%s", integ_path(t, "ran"));
        snprintf(script, sizeof(script), "echo ran >> %s; %s; exit 4", marker, integ_wait_go(t));

        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "job-1", "--", "sh", "-c", script, NULL);
        integ_assert_code(t, &res, 0);
        pid1 = strtol(res.out, NULL, 10);
        integ_result_done(&res);
        assert_true(integ_wait_file_contains(marker, "ran\n", INTEG_WAIT_MS));

        /* The retry, with another command even: the id names the process. */
        p = integ_cli_json(t, "exec", "demo", "--detach", "--json", "--id", "job-1", "--", "sh", "-c",
                           "echo second >> /dev/null", NULL);
        assert_string_equal(integ_json_str(p, "id"), "job-1");
        pid2 = (long)integ_json_int(p, "pid");
        json_object_put(p);
        assert_int_equal(pid1, pid2);

        p = ps_find_id(t, "demo", "job-1", &all);
        assert_non_null(p);
        assert_int_equal(integ_json_int(p, "pid"), pid1);
        json_object_put(all);

        /* An attached repeat follows the same process to its exit. */
        integ_touch(integ_path(t, "go"));
        integ_cli(t, &res, NULL, "exec", "demo", "--id", "job-1", "--", "false", NULL);
        integ_assert_code(t, &res, 4);
        integ_result_done(&res);
        assert_int_equal(count_in_file(marker, "ran\n"), 1);

        /* wait takes the id too. */
        integ_cli(t, &res, NULL, "wait", "demo", "job-1", NULL);
        integ_assert_code(t, &res, 4);
        assert_string_equal(res.out, "exited 4\n");
        integ_result_done(&res);
}

static void test_exec_without_id_gets_one_from_the_daemon(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *all, *p;
        char id[64];

        integ_vm_with_sim(t, "demo");
        p = integ_cli_json(t, "exec", "demo", "--detach", "--json", "--", "true", NULL);
        snprintf(id, sizeof(id), "%s", integ_json_str(p, "id"));
        json_object_put(p);
        assert_int_equal(strlen(id), 32);
        assert_int_equal(strspn(id, "0123456789abcdef"), 32);
        p = ps_find_id(t, "demo", id, &all);
        assert_non_null(p);
        json_object_put(all);

        /* A bad id is refused before anything runs, naming the rule. */
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "../x", "--", "true", NULL);
        integ_assert_code(t, &res, 125);
        integ_assert_contains(res.err, "exec id must be");
        integ_result_done(&res);
}

static void test_rm_forgets_only_an_exited_process(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *all;
        char script[512], pid_s[32];
        long pid;

        integ_vm_with_sim(t, "demo");
        snprintf(script, sizeof(script), "%s; exit 3", integ_wait_go(t));
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "rm-me", "--", "sh", "-c", script, NULL);
        integ_assert_code(t, &res, 0);
        pid = strtol(res.out, NULL, 10);
        integ_result_done(&res);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);

        /* Still running: refused, and nothing is forgotten. */
        integ_cli(t, &res, NULL, "rm", "demo", "rm-me", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "has not exited");
        integ_result_done(&res);
        assert_non_null(ps_find_id(t, "demo", "rm-me", &all));
        json_object_put(all);

        integ_touch(integ_path(t, "go"));
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 3);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "rm", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        assert_null(ps_find_id(t, "demo", "rm-me", &all));
        json_object_put(all);
        expect_not_found(t, "wait", pid_s, "no process");
        expect_not_found(t, "rm", "rm-me", "no exec id 'rm-me'");

        /* The id is free again. */
        integ_cli(t, &res, NULL, "exec", "demo", "--id", "rm-me", "--", "sh", "-c", "exit 0", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
}

/* The guest is not there, so the exec cannot reach it before its deadline: cancelled, and when the
 * guest comes it is not sent. */
static void test_exec_deadline_before_send_cancels_it_for_good(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        struct json_object *all;
        char script[512], marker[INTEG_PATH_MAX];

        snprintf(marker, sizeof(marker), "%s", integ_path(t, "late-ran"));
        snprintf(script, sizeof(script), "touch %s", marker);
        integ_cli(t, &res, NULL, "vm", "add", "demo", "--hvsock", integ_hvsock(t, "demo"), NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);

        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "late", "--deadline-ms", "300", "--", "sh", "-c",
                  script, NULL);
        integ_assert_code(t, &res, 125);
        integ_assert_contains(res.err, "deadline");
        integ_result_done(&res);
        assert_null(ps_find_id(t, "demo", "late", &all));
        json_object_put(all);

        integ_sim_start(t, "demo");
        integ_wait_bridge(t, "demo", "connected");
        /* A later exec runs; the cancelled one is nowhere, and never ran. */
        integ_cli(t, &res, NULL, "exec", "demo", "--", "sh", "-c", "echo later", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "later\n");
        integ_result_done(&res);
        assert_null(ps_find_id(t, "demo", "late", &all));
        json_object_put(all);
        assert_int_equal(access(marker, F_OK), -1);

        /* The id was never taken: a retry runs it, once. */
        integ_cli(t, &res, NULL, "exec", "demo", "--id", "late", "--", "sh", "-c", script, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        assert_int_equal(access(marker, F_OK), 0);
}

/* A daemon with --exit-dir pointing at a directory of the test's own. */
struct exit_fixture {
        struct integ *t;
        char dir[64];
};

static int exit_setup(void **state)
{
        struct exit_fixture *e = calloc(1, sizeof(*e));
        char *extra[] = { (char *)"--exit-dir", e ? e->dir : NULL, NULL };

        if (!e)
                return -1;
        snprintf(e->dir, sizeof(e->dir), "/tmp/vsockmux-exit.XXXXXX");
        if (!mkdtemp(e->dir) || integ_new_args(*state, extra, &e->t) < 0) {
                free(e);
                return -1;
        }
        *state = e;
        return 0;
}

static int exit_teardown(void **state)
{
        struct exit_fixture *e = *state;
        char cmd[128];
        int code = integ_free(e->t);

        snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", e->dir);
        free(e);
        return code == 0 ? 0 : -1;
}

#define DRAIN_BYTES 300000u

/* conmon's contract: DIR/<exec-id> holds the decimal status, appears whole (an inotify watcher
 * sees the name arrive by rename only, never created or written in place), and only once the
 * output reached its endpoint (all of it is in the stdout file when the name appears). */
static void test_exit_file_appears_whole_and_after_the_output(void **state)
{
        struct exit_fixture *e = *state;
        struct integ *t = e->t;
        struct integ_result res;
        char out[INTEG_PATH_MAX], file[128], script[128];
        struct stat st;
        bool moved = false;
        char *text;
        int ino;

        integ_vm_with_sim(t, "demo");
        snprintf(out, sizeof(out), "%s", integ_path(t, "drain.out"));
        snprintf(file, sizeof(file), "%s/drain-1", e->dir);
        ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        assert_true(ino >= 0);
        assert_true(inotify_add_watch(ino, e->dir, IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO) >= 0);

        snprintf(script, sizeof(script), "head -c %u /dev/zero; exit 9", DRAIN_BYTES);
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "drain-1", "--stdout", out, "--", "sh", "-c",
                  script, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);

        /* The watcher: every event naming the file is its rename into place. */
        while (!moved) {
                struct pollfd pfd = { .fd = ino, .events = POLLIN };
                char ev[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
                ssize_t n;

                assert_true(poll(&pfd, 1, INTEG_WAIT_MS) > 0);
                n = read(ino, ev, sizeof(ev));
                assert_true(n > 0);
                for (char *at = ev; at < ev + n;) {
                        const struct inotify_event *ie = (const struct inotify_event *)at;

                        if (ie->len && strcmp(ie->name, "drain-1") == 0) {
                                if (!(ie->mask & IN_MOVED_TO))
                                        fail_msg("the exit file was written in place (inotify mask 0x%x)", ie->mask);
                                /* The output is all there by the time the name is. */
                                assert_int_equal(stat(out, &st), 0);
                                assert_int_equal(st.st_size, DRAIN_BYTES);
                                text = integ_read_file(file, NULL);
                                assert_non_null(text);
                                assert_string_equal(text, "9");
                                free(text);
                                moved = true;
                        }
                        at += sizeof(*ie) + ie->len;
                }
        }
        close(ino);
        /* No temp file is left beside it, and a waiter sees the same status. */
        snprintf(file, sizeof(file), "%s/.drain-1.tmp", e->dir);
        assert_int_equal(access(file, F_OK), -1);
        integ_cli(t, &res, NULL, "wait", "demo", "drain-1", NULL);
        integ_assert_code(t, &res, 9);
        integ_result_done(&res);
}

static void test_k8s_file_log_holds_both_streams_with_partial_and_long_lines(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char log[INTEG_PATH_MAX], spec[INTEG_PATH_MAX + 16], want[70000 + 64];
        struct integ_cri_log l;

        integ_vm_with_sim(t, "demo");
        snprintf(log, sizeof(log), "%s", integ_path(t, "c1.log"));
        snprintf(spec, sizeof(spec), "k8s-file:%s", log);
        /* A line split across writes, stdout and stderr interleaved, a 70,000-byte line (more than a
         * relay buffer: it arrives in pieces) and an unfinished last line. */
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "logged", "--log", spec, "--", "sh", "-c",
                  "echo out1; echo err1 >&2; printf 'par'; sleep 0.1; printf 'tial\\n'; echo err2 >&2; "
                  "head -c 70000 /dev/zero | tr '\\0' x; echo; printf tail",
                  NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "wait", "demo", "logged", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);

        integ_cri_log_parse(log, &l);
        memset(want, 0, sizeof(want));
        strcpy(want, "out1\npartial\n");
        memset(want + strlen(want), 'x', 70000);
        strcat(want, "\ntail");
        assert_string_equal(l.text[0], want);
        assert_string_equal(l.text[1], "err1\nerr2\n");
        /* "tail" at least is partial; the long line too unless it came in one piece. */
        assert_true(l.partial[0] >= 1);
        integ_cri_log_done(&l);

        /* The log replaces the endpoints, and a bad spec is refused naming the forms. */
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--log", spec, "--stdout", log, "--", "true", NULL);
        integ_assert_code(t, &res, 125);
        integ_assert_contains(res.err, "give no stdout or stderr path");
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--log", "json-file:/x", "--", "true", NULL);
        integ_assert_code(t, &res, 125);
        integ_assert_contains(res.err, "k8s-file:/ABSOLUTE/PATH, journald or passthrough");
        integ_result_done(&res);
}

/* An external logrotate renames the file; `log reopen` makes the records go to a new one. */
static void test_log_reopen_after_a_rename_writes_to_the_new_file(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char log[INTEG_PATH_MAX], old[INTEG_PATH_MAX + 4], spec[INTEG_PATH_MAX + 16], script[512];
        struct integ_cri_log l;

        integ_vm_with_sim(t, "demo");
        snprintf(log, sizeof(log), "%s", integ_path(t, "rot.log"));
        snprintf(old, sizeof(old), "%s.1", log);
        snprintf(spec, sizeof(spec), "k8s-file:%s", log);
        snprintf(script, sizeof(script), "echo before; %s; echo after", integ_wait_go(t));
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "rot", "--log", spec, "--", "sh", "-c", script,
                  NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        assert_true(integ_wait_file_contains(log, " stdout F before\n", INTEG_WAIT_MS));
        assert_int_equal(rename(log, old), 0);
        integ_cli(t, &res, NULL, "log", "reopen", "demo", "rot", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_touch(integ_path(t, "go"));
        integ_cli(t, &res, NULL, "wait", "demo", "rot", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);

        integ_cri_log_parse(old, &l);
        assert_string_equal(l.text[0], "before\n");
        integ_cri_log_done(&l);
        integ_cri_log_parse(log, &l);
        assert_string_equal(l.text[0], "after\n");
        integ_cri_log_done(&l);

        /* A process without a k8s-file log says so. */
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "plain", "--", "true", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "log", "reopen", "demo", "plain", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "no k8s-file log");
        integ_result_done(&res);
}

/* Concatenates PATH.n-1 ... PATH.1, PATH (oldest first) into out: the log as one reader follows it. */
static unsigned concat_rotated(const char *log, char *out, size_t outlen, struct integ *t)
{
        char name[INTEG_PATH_MAX + 16];
        unsigned n = 1;
        FILE *o;

        snprintf(out, outlen, "%s", integ_path(t, "joined.log"));
        for (;; n++) {
                snprintf(name, sizeof(name), "%s.%u", log, n);
                if (access(name, F_OK) < 0)
                        break;
        }
        o = fopen(out, "w");
        assert_non_null(o);
        for (unsigned i = n; i >= 1; i--) {
                size_t len;
                char *text;

                if (i == 1)
                        snprintf(name, sizeof(name), "%s", log);
                else
                        snprintf(name, sizeof(name), "%s.%u", log, i - 1);
                text = integ_read_file(name, &len);
                assert_non_null(text);
                /* No file passes the cap: every record here is far smaller than it. */
                if (len > 1024)
                        fail_msg("%s holds %zu bytes, over --log-size-max 1K", name, len);
                assert_int_equal(fwrite(text, 1, len, o), len);
                free(text);
        }
        fclose(o);
        return n; /* files, the current one included */
}

/* --log-size-max: the file rotates between records, a line cut by the rotation is a P record in
 * the old file completed in the new one, and read in order the files give back every byte. */
static void test_log_size_max_rotates_between_records_and_loses_nothing(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char log[INTEG_PATH_MAX], spec[INTEG_PATH_MAX + 16], script[4 * INTEG_PATH_MAX + 512], joined[INTEG_PATH_MAX];
        char count_path[INTEG_PATH_MAX], want[65536] = "", *count, *old;
        struct integ_cri_log l;
        unsigned files;
        long lines;

        integ_vm_with_sim(t, "demo");
        snprintf(log, sizeof(log), "%s", integ_path(t, "cap.log"));
        snprintf(count_path, sizeof(count_path), "%s", integ_path(t, "count"));
        snprintf(spec, sizeof(spec), "k8s-file:%s", log);
        /* The stdout line starts, is in the log as a P record, stderr lines follow until the file
         * rotated, and only then does the stdout line end. */
        snprintf(script, sizeof(script),
                 "printf 'start-'; until grep -qs 'stdout P start-' %s; do sleep 0.02; done; i=0; "
                 "until [ -e %s.1 ]; do echo \"err line $i\" >&2; i=$((i+1)); sleep 0.01; done; "
                 "echo $i > %s; printf 'end\\n'",
                 log, log, count_path);
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "capped", "--log", spec, "--log-size-max", "1K",
                  "--log-max-files", "1000", "--", "sh", "-c", script, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "wait", "demo", "capped", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);

        count = integ_read_file(count_path, NULL);
        assert_non_null(count);
        lines = strtol(count, NULL, 10);
        free(count);
        for (long i = 0; i < lines; i++)
                snprintf(want + strlen(want), sizeof(want) - strlen(want), "err line %ld\n", i);
        files = concat_rotated(log, joined, sizeof(joined), t);
        assert_true(files >= 2);
        integ_cri_log_parse(joined, &l);
        assert_string_equal(l.text[0], "start-end\n");
        assert_string_equal(l.text[1], want);
        integ_cri_log_done(&l);
        /* The rotation fell inside the stdout line: its start is in an older file. */
        old = integ_read_file(log, NULL);
        assert_null(strstr(old, "stdout P start-"));
        assert_non_null(strstr(old, "stdout F end"));
        free(old);
}

/* --log-max-files N keeps N files, the current one included; older records go, whole files only. */
static void test_log_max_files_keeps_that_many(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char log[INTEG_PATH_MAX], spec[INTEG_PATH_MAX + 16], name[INTEG_PATH_MAX + 16], joined[INTEG_PATH_MAX];
        struct integ_cri_log l;
        const char *last;
        long first;

        integ_vm_with_sim(t, "demo");
        snprintf(log, sizeof(log), "%s", integ_path(t, "keep.log"));
        snprintf(spec, sizeof(spec), "k8s-file:%s", log);
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "kept", "--log", spec, "--log-size-max", "1K",
                  "--log-max-files", "2", "--", "sh", "-c",
                  "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "wait", "demo", "kept", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        snprintf(name, sizeof(name), "%s.2", log);
        assert_int_equal(access(name, F_OK), -1);
        assert_int_equal(concat_rotated(log, joined, sizeof(joined), t), 2);
        integ_cri_log_parse(joined, &l);
        /* What is left is a contiguous tail ending at the last line. */
        assert_int_equal(strncmp(l.text[0], "line ", 5), 0);
        first = strtol(l.text[0] + 5, NULL, 10);
        assert_true(first > 0);
        for (long i = first, at = 0; i < 300; i++) {
                char want[32];
                int n = snprintf(want, sizeof(want), "line %ld\n", i);

                if (strncmp(l.text[0] + at, want, (size_t)n) != 0)
                        fail_msg("the kept files are not a contiguous tail at line %ld: '%.40s'", i, l.text[0] + at);
                at += n;
        }
        last = l.text[0] + strlen(l.text[0]) - strlen("line 299\n");
        assert_string_equal(last, "line 299\n");
        integ_cri_log_done(&l);
        /* Without a k8s-file log the options mean nothing: refused. */
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--log-size-max", "1K", "--", "true", NULL);
        integ_assert_code(t, &res, 2);
        integ_assert_contains(res.err, "apply to --log k8s-file");
        integ_result_done(&res);
}

static void test_log_journald_writes_conmons_fields(void **state)
{
        struct integ_journal *j = integ_journal_or_skip(state);
        struct integ_journal_entries all = { .n = 0 };
        struct integ_result res;
        const char *e;

        integ_vm_with_sim(j->t, "demo");
        integ_cli(j->t, &res, NULL, "exec", "demo", "--detach", "--id", "journal-logged-exec", "--log", "journald",
                  "--", "sh", "-c", "echo out1; echo err1 >&2; printf part", NULL);
        integ_assert_code(j->t, &res, 0);
        integ_result_done(&res);
        integ_cli(j->t, &res, NULL, "wait", "demo", "journal-logged-exec", NULL);
        integ_assert_code(j->t, &res, 0);
        integ_result_done(&res);

        integ_journal_collect(j->sock, &all);
        e = integ_journal_find(&all, "out1");
        integ_assert_contains(e, "\nPRIORITY=6\n");
        integ_assert_contains(e, "\nCONTAINER_ID_FULL=journal-logged-exec\n");
        integ_assert_contains(e, "\nCONTAINER_ID=journal-logg\n");
        integ_assert_contains(e, "\nCONTAINER_NAME=journal-logged-exec\n");
        integ_assert_contains(e, "\nVSOCKMUX_STREAM=stdout\n");
        assert_null(strstr(e, "CONTAINER_PARTIAL_MESSAGE"));
        e = integ_journal_find(&all, "err1");
        integ_assert_contains(e, "\nPRIORITY=3\n");
        integ_assert_contains(e, "\nVSOCKMUX_STREAM=stderr\n");
        e = integ_journal_find(&all, "part");
        integ_assert_contains(e, "\nCONTAINER_PARTIAL_MESSAGE=true\n");
        assert_int_equal(all.n, 3);
        integ_journal_entries_done(&all);
        /* Endpoints and a journald log exclude each other. */
        integ_cli(j->t, &res, NULL, "exec", "demo", "--detach", "--log", "journald", "--stdout", "/dev/null", "--",
                  "true", NULL);
        integ_assert_code(j->t, &res, 125);
        integ_assert_contains(res.err, "a journald log takes stdout and stderr");
        integ_result_done(&res);
}

/* vsockmuxd --default-log k8s-file:/DIR: the daemon's directory, reusing the exit-dir fixture's. */
static int default_log_setup(void **state)
{
        struct exit_fixture *e = calloc(1, sizeof(*e));
        char spec[96];
        char *extra[] = { (char *)"--default-log", spec, NULL };

        if (!e)
                return -1;
        snprintf(e->dir, sizeof(e->dir), "/tmp/vsockmux-logs.XXXXXX");
        if (!mkdtemp(e->dir))
                return -1;
        snprintf(spec, sizeof(spec), "k8s-file:%s", e->dir);
        if (integ_new_args(*state, extra, &e->t) < 0) {
                free(e);
                return -1;
        }
        *state = e;
        return 0;
}

/* Only an exec that names no log and no output endpoint gets the daemon's default. */
static void test_default_log_applies_to_execs_that_name_no_output(void **state)
{
        struct exit_fixture *e = *state;
        struct integ *t = e->t;
        char path[128], out[INTEG_PATH_MAX];
        struct integ_result res;
        struct integ_cri_log l;

        integ_vm_with_sim(t, "demo");
        snprintf(out, sizeof(out), "%s", integ_path(t, "d3.out"));
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "d1", "--", "sh", "-c", "echo hi; echo ho >&2",
                  NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "d2", "--log", "passthrough", "--", "echo", "x",
                  NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "d3", "--stdout", out, "--", "echo", "y", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_cli(t, &res, NULL, "exec", "demo", "--id", "d4", "--", "echo", "attached", NULL);
        integ_assert_code(t, &res, 0);
        assert_string_equal(res.out, "attached\n");
        integ_result_done(&res);
        for (int i = 1; i <= 3; i++) {
                char id[8];

                snprintf(id, sizeof(id), "d%d", i);
                integ_cli(t, &res, NULL, "wait", "demo", id, NULL);
                integ_assert_code(t, &res, 0);
                integ_result_done(&res);
        }
        snprintf(path, sizeof(path), "%s/d1.log", e->dir);
        integ_cri_log_parse(path, &l);
        assert_string_equal(l.text[0], "hi\n");
        assert_string_equal(l.text[1], "ho\n");
        integ_cri_log_done(&l);
        for (int i = 2; i <= 4; i++) {
                snprintf(path, sizeof(path), "%s/d%d.log", e->dir, i);
                if (access(path, F_OK) == 0)
                        fail_msg("%s exists: that exec named its own output", path);
        }
        assert_true(integ_wait_file_contains(out, "y\n", 1));
}

/* A save of VM demo whose one process (exec id RESTORE_ID, all digits as an id may be) writes a line
 * every 20 ms to out until go appears, then exits 5; and a second vsockmuxd, serving b.sock with
 * the first's hvsock root, to restore it on. With hcsshim's guest the process is its container's
 * init: it redials no other exec's stdio after a move. */
#define RESTORE_ID "4242"

struct moved {
        char blob[INTEG_PATH_MAX], out[INTEG_PATH_MAX], sock[INTEG_PATH_MAX], log[INTEG_PATH_MAX];
        pid_t daemon;
        long pid;
};

/* The CLI against the second daemon. */
static void cli_b(struct integ *t, const struct moved *m, struct integ_result *res, ...)
{
        char *const prefix[] = { (char *)t->cfg->cli, (char *)"--socket", (char *)m->sock, NULL };
        va_list ap;

        va_start(ap, res);
        integ_run_prefixed(t, res, prefix, ap);
        va_end(ap);
}

static void save_and_start_second_daemon(struct integ *t, struct moved *m)
{
        char sdir[INTEG_PATH_MAX], script[512];
        char *daemon[] = { (char *)t->cfg->daemon,
                           (char *)"--socket",
                           m->sock,
                           (char *)"--state-dir",
                           sdir,
                           (char *)"--hvsock-root",
                           t->dir,
                           NULL };
        char *args[16];
        struct integ_result res;
        size_t n = 0;
        int code;

        snprintf(m->blob, sizeof(m->blob), "%s", integ_path(t, "demo.state"));
        snprintf(m->out, sizeof(m->out), "%s", integ_path(t, "out-a"));
        snprintf(m->sock, sizeof(m->sock), "%s", integ_path(t, "b.sock"));
        snprintf(m->log, sizeof(m->log), "%s", integ_path(t, "b.log"));
        snprintf(sdir, sizeof(sdir), "%s", integ_path(t, "b-state"));
        snprintf(script, sizeof(script), "i=0; while [ ! -e %s ]; do i=$((i+1)); echo $i; sleep 0.02; done; exit 5",
                 integ_path(t, "go"));
        integ_vm_with_sim(t, "demo");
        args[n++] = (char *)"exec";
        args[n++] = (char *)"demo";
        if (t->cfg->upstream) {
                integ_cli(t, &res, NULL, "container", "create", "demo", "c1", NULL);
                integ_assert_code(t, &res, 0);
                integ_result_done(&res);
                args[n++] = (char *)"--container";
                args[n++] = (char *)"c1";
        }
        args[n++] = (char *)"--detach";
        args[n++] = (char *)"--id";
        args[n++] = (char *)RESTORE_ID;
        args[n++] = (char *)"--stdout";
        args[n++] = m->out;
        args[n++] = (char *)"--";
        args[n++] = (char *)"sh";
        args[n++] = (char *)"-c";
        args[n++] = script;
        args[n] = NULL;
        integ_cliv(t, &res, NULL, args);
        m->pid = integ_detached_pid(t, &res);
        assert_true(integ_wait_file_contains(m->out, "3\n", INTEG_WAIT_MS));
        integ_cli(t, &res, NULL, "save", "demo", "--out", m->blob, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);

        m->daemon = integ_spawn(t, daemon, NULL, m->log, m->log);
        for (int tries = 0;; tries++) {
                cli_b(t, m, &res, "vm", "ls", NULL);
                code = res.code;
                integ_result_done(&res);
                if (code == 0)
                        break;
                if (tries > 200)
                        fail_msg("the second vsockmuxd never served %s", m->sock);
                integ_sleep_ms(25);
        }
}

static void stop_second_daemon(struct integ *t, struct moved *m)
{
        int code;

        assert_int_equal(kill(m->daemon, SIGTERM), 0);
        assert_int_equal(integ_reap(t, m->daemon, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
}

/* restore --io exec=ID names the process by its exec id (a pid the guest reused would name an
 * exited entry too): its output goes to the new endpoint, and it goes on to its exit there. */
static void test_restore_io_by_exec_id_takes_the_new_endpoint(void **state)
{
        struct integ *t = *state;
        char io[2 * INTEG_PATH_MAX], out_b[INTEG_PATH_MAX], pid_s[16];
        struct integ_result res;
        struct moved m;

        save_and_start_second_daemon(t, &m);
        snprintf(out_b, sizeof(out_b), "%s", integ_path(t, "out-b"));
        snprintf(io, sizeof(io), "exec=%s:stdout=%s", RESTORE_ID, out_b);
        cli_b(t, &m, &res, "restore", "--in", m.blob, "--io", io, NULL);
        if (res.code != 0)
                fail_msg("restore --io %s failed with %d: %s", io, res.code, res.err);
        integ_assert_contains(res.out, "restored demo: 1 processes");
        integ_result_done(&res);
        /* Lines written after the restore reach the new file: the guest redialled to it. */
        if (!integ_wait_file_contains(out_b, "\n", INTEG_WAIT_MS)) {
                char *log = integ_read_file(m.log, NULL);

                fail_msg("nothing reached %s; the second daemon's log:\n%s", out_b, log ? log : "(none)");
        }
        integ_touch(integ_path(t, "go"));
        snprintf(pid_s, sizeof(pid_s), "%ld", m.pid);
        cli_b(t, &m, &res, "wait", "demo", pid_s, NULL);
        assert_int_equal(res.code, 5);
        integ_result_done(&res);
        stop_second_daemon(t, &m);
}

/* An exec id the saved state does not hold is refused by name, as an unknown pid is, and so is
 * one that is no exec id at all; the daemon serves on, takes nothing over, and the source can
 * still roll back. */
static void test_restore_io_unknown_exec_id_is_refused_by_name(void **state)
{
        struct integ *t = *state;
        char io[2 * INTEG_PATH_MAX], out_b[INTEG_PATH_MAX];
        struct integ_result res;
        struct moved m;

        save_and_start_second_daemon(t, &m);
        snprintf(out_b, sizeof(out_b), "%s", integ_path(t, "out-b"));
        snprintf(io, sizeof(io), "exec=never-was:stdout=%s", out_b);
        cli_b(t, &m, &res, "restore", "--in", m.blob, "--io", io, NULL);
        assert_int_equal(res.code, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "--io names exec never-was, which the saved state does not hold");
        integ_assert_contains(res.err, "(INVALID_ARGUMENT)");
        integ_result_done(&res);
        /* Digits without the prefix are a pid, which the state does not hold either. */
        snprintf(io, sizeof(io), "%s:stdout=%s", RESTORE_ID, out_b);
        cli_b(t, &m, &res, "restore", "--in", m.blob, "--io", io, NULL);
        if (m.pid != atol(RESTORE_ID)) {
                assert_int_equal(res.code, 1);
                integ_assert_contains(res.err, "--io names pid " RESTORE_ID ", which the saved state does not hold");
        }
        integ_result_done(&res);
        snprintf(io, sizeof(io), "exec=a..b:stdout=%s", out_b);
        cli_b(t, &m, &res, "restore", "--in", m.blob, "--io", io, NULL);
        assert_int_equal(res.code, 1);
        integ_assert_contains(res.err, "--io names exec id 'a..b', which is not one");
        integ_assert_contains(res.err, "(INVALID_ARGUMENT)");
        integ_result_done(&res);
        /* No ID after the prefix is the CLI's usage error. */
        cli_b(t, &m, &res, "restore", "--in", m.blob, "--io", "exec=:stdout=/dev/null", NULL);
        assert_int_equal(res.code, 2);
        integ_assert_contains(res.err, "exec=ID");
        integ_result_done(&res);

        cli_b(t, &m, &res, "vm", "ls", NULL);
        assert_int_equal(res.code, 0);
        assert_null(strstr(res.out, "demo"));
        integ_result_done(&res);
        assert_int_equal(access(out_b, F_OK), -1);
        stop_second_daemon(t, &m);
        integ_cli(t, &res, NULL, "resume", "demo", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_unknown_pid_or_id_is_not_found_for_every_method),
                cmocka_unit_test(test_exec_id_repeated_returns_the_same_process_and_runs_it_once),
                cmocka_unit_test(test_exec_without_id_gets_one_from_the_daemon),
                cmocka_unit_test(test_restore_io_by_exec_id_takes_the_new_endpoint),
                cmocka_unit_test(test_restore_io_unknown_exec_id_is_refused_by_name),
                cmocka_unit_test(test_rm_forgets_only_an_exited_process),
                cmocka_unit_test(test_exec_deadline_before_send_cancels_it_for_good),
                cmocka_unit_test(test_k8s_file_log_holds_both_streams_with_partial_and_long_lines),
                cmocka_unit_test(test_log_reopen_after_a_rename_writes_to_the_new_file),
                cmocka_unit_test(test_log_size_max_rotates_between_records_and_loses_nothing),
                cmocka_unit_test(test_log_max_files_keeps_that_many),
                cmocka_unit_test_setup_teardown(test_log_journald_writes_conmons_fields, integ_journal_setup,
                                                integ_journal_teardown),
                cmocka_unit_test_setup_teardown(test_default_log_applies_to_execs_that_name_no_output,
                                                default_log_setup, exit_teardown),
                cmocka_unit_test_setup_teardown(test_exit_file_appears_whole_and_after_the_output, exit_setup,
                                                exit_teardown),
        };

        return integ_run("integration-records", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
