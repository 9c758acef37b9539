/* Live upgrade with VMs (issue 15, section 1) against real daemons and the real simulator: a
 * process writes lines to a file endpoint through `vsockmux upgrade`, the new vsockmuxd taking
 * its VM over live, and the guest never notices (one bridge connection, no stdio redial, every
 * line exactly once, the exit code); so do one writing to a k8s-file log and one logging to
 * journald; an attached exec runs through it; a new binary that cannot take over (missing, exits
 * at start, not ready in time, refuses, cannot adopt) leaves the old daemon serving the VM with
 * nothing lost and a `wait` in flight answered; and a VM the hand-over cannot move refuses the
 * upgrade by name. The test is a child subreaper: the new daemon,
 * orphaned when the old one exits, is ours to reap. */
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
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

/* The VM "demo" with a simulator keeping --stats (its counts of bridge connections and redials). */
static void vm_with_counted_sim(struct integ *t)
{
        char stats[INTEG_PATH_MAX], log[INTEG_PATH_MAX], hv[INTEG_PATH_MAX];
        struct integ_result res;
        char *argv[8];
        unsigned n = 0;

        snprintf(stats, sizeof(stats), "%s", integ_path(t, "sim.stats"));
        snprintf(log, sizeof(log), "%s", integ_path(t, "sim-demo.log"));
        snprintf(hv, sizeof(hv), "%s", integ_hvsock(t, "demo"));
        integ_cli(t, &res, NULL, "vm", "add", "demo", "--hvsock", hv, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        argv[n++] = (char *)t->cfg->sim;
        argv[n++] = (char *)"--hvsock";
        argv[n++] = hv;
        argv[n++] = (char *)"--stats";
        argv[n++] = stats;
        if (t->cfg->upstream)
                argv[n++] = (char *)"--fidelity=upstream";
        else if (!t->cfg->resume)
                argv[n++] = (char *)"--no-resume";
        argv[n] = NULL;
        integ_spawn(t, argv, NULL, log, log);
        integ_wait_bridge(t, "demo", "connected");
}

static long sim_stat(struct integ *t, const char *name)
{
        char *all = integ_read_file(integ_path(t, "sim.stats"), NULL);
        char key[64];
        const char *at;
        long v;

        if (!all)
                fail_msg("the simulator wrote no stats");
        snprintf(key, sizeof(key), "%s ", name);
        at = strstr(all, key);
        if (!at)
                fail_msg("no %s in the simulator's stats: %s", name, all);
        v = atol(at + strlen(key));
        free(all);
        return v;
}

/* A writer that goes on until the test touches "stop", then says "end" and exits 7. */
static long start_writer(struct integ *t, const char *out)
{
        char script[INTEG_PATH_MAX * 2], err[INTEG_PATH_MAX];
        struct integ_result res;

        snprintf(err, sizeof(err), "%s", integ_path(t, "writer.err"));
        snprintf(script, sizeof(script),
                 "i=0; while [ ! -e %s ]; do echo \"line $i\"; i=$((i+1)); sleep 0.005; done; echo end; exit 7",
                 integ_path(t, "stop"));
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--stdout", out, "--stderr", err, "--", "sh", "-c", script,
                  NULL);
        return integ_detached_pid(t, &res);
}

/* How many lines the writer has written to out so far. */
static long lines_so_far(const char *out)
{
        char *all = integ_read_file(out, NULL);
        long n = 0;

        for (const char *p = all; p && *p; p++)
                n += *p == '\n';
        free(all);
        return n;
}

/* Waits until out holds `more` lines beyond what it holds now. */
static void wait_more_lines(struct integ *t, const char *out, long more)
{
        char needle[32];

        snprintf(needle, sizeof(needle), "line %ld\n", lines_so_far(out) + more);
        if (!integ_wait_file_contains(out, needle, INTEG_WAIT_MS)) {
                integ_dump_daemon_log(t);
                fail_msg("the writer's output stopped before '%s'", needle);
        }
}

/* Every line arrived exactly once, in order, "end" last: in text (changed). Returns how many lines
 * came before "end". */
static long check_sequence_in(struct integ *t, char *all)
{
        char *line, *save = NULL;
        char want[32];
        long i = 0;

        for (line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save), i++) {
                snprintf(want, sizeof(want), "line %ld", i);
                if (strcmp(line, want) != 0) {
                        if (strcmp(line, "end") == 0 && !strtok_r(NULL, "\n", &save))
                                break;
                        integ_dump_daemon_log(t);
                        fail_msg("line %ld is '%s', not '%s' (lost or repeated output)", i, line, want);
                }
        }
        assert_non_null(line); /* "end" came, last */
        return i;
}

/* And in the file out. */
static void check_sequence(struct integ *t, const char *out)
{
        char *all = integ_read_file(out, NULL);

        assert_non_null(all);
        assert_true(check_sequence_in(t, all) > 40);
        free(all);
}

/* Without the resume extension a redial replays what the guest still holds: every line at least
 * once, in order, none missing, "end" last. */
static void check_no_gap(struct integ *t, const char *out)
{
        char *all, *line, *save = NULL;
        long next = 0;

        all = integ_read_file(out, NULL);
        assert_non_null(all);
        for (line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                long n;

                if (strcmp(line, "end") == 0)
                        break;
                n = strtol(line + strlen("line "), NULL, 10);
                if (strncmp(line, "line ", 5) != 0 || n > next) {
                        integ_dump_daemon_log(t);
                        fail_msg("'%s' where line %ld was due (lost output)", line, next);
                }
                if (n == next)
                        next++;
        }
        assert_non_null(line);
        assert_true(next > 40);
        free(all);
}

/* And the guest never reconnected. */
static void check_lines(struct integ *t, const char *out)
{
        check_sequence(t, out);
        assert_int_equal(sim_stat(t, "bridge_connects"), 1);
        assert_int_equal(sim_stat(t, "stdio_redials"), 0);
}

/* Stops the writer, waits for its exit code and checks its output. */
static void finish_writer(struct integ *t, long pid, const char *out)
{
        struct integ_result res;
        char pid_s[16];

        integ_touch(integ_path(t, "stop"));
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 7);
        integ_result_done(&res);
        check_lines(t, out);
}

static pid_t upgrade_ok(struct integ *t)
{
        struct integ_result res;
        const char *pid_at;
        int code = -1;
        pid_t pid;

        integ_cli(t, &res, NULL, "upgrade", NULL);
        integ_assert_code(t, &res, 0);
        pid_at = strstr(res.out, "serves as pid ");
        assert_non_null(pid_at);
        pid = (pid_t)atol(pid_at + strlen("serves as pid "));
        assert_true(pid > 0);
        assert_int_not_equal(pid, t->daemon);
        integ_result_done(&res);
        assert_int_equal(integ_reap(t, t->daemon, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
        t->daemon = pid;
        return pid;
}

/* The new daemon keeps the record of the VMs it took over (the old one's writes all landed
 * before): killed after the upgrade, a vsockmuxd restarted on the state dir recovers the VM and
 * the writer's file goes on exactly once. */
static void test_record_follows_the_upgrade(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX], pid_s[16];
        struct integ_result res;
        int code = -1;
        long pid;

        /* hcsshim's guest redials only a container init's stdio: an exec's output ends at the kill. */
        if (t->cfg->upstream)
                skip();

        snprintf(out, sizeof(out), "%s", integ_path(t, "out"));
        vm_with_counted_sim(t);
        pid = start_writer(t, out);
        wait_more_lines(t, out, 20);
        upgrade_ok(t);
        wait_more_lines(t, out, 20);
        assert_int_equal(kill(t->daemon, SIGKILL), 0);
        assert_int_equal(integ_reap(t, t->daemon, INTEG_WAIT_MS, &code), 0);
        t->daemon = 0;
        assert_int_equal(integ_daemon_restart(t, NULL), 0);
        assert_true(integ_wait_file_contains(t->daemon_log, "recovered 1 VMs with 1 processes", INTEG_WAIT_MS));
        wait_more_lines(t, out, 20);
        integ_touch(integ_path(t, "stop"));
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 7);
        integ_result_done(&res);
        if (t->cfg->resume)
                check_sequence(t, out);
        else
                check_no_gap(t, out);
}

/* A reader mid-way through a --stdin file, busy elsewhere while the upgrade holds the VM (what the
 * relay held goes back to the file), then reading on from the new daemon: every byte once; a second
 * process whose stdin had ended goes through the upgrade too. */
#define STDIN_BYTES (3u << 20)
#define STDIN_FIRST 1000000u

static void test_stdin_reader_goes_on_through_the_upgrade(void **state)
{
        struct integ *t = *state;
        char in[INTEG_PATH_MAX], copy[INTEG_PATH_MAX], script[1024], pid_s[16];
        struct integ_result res;
        struct stat st;
        uint64_t x = 0x9e3779b97f4a7c15ull;
        size_t la, lc;
        char *a, *c;
        FILE *f;
        long pid, ended;

        snprintf(in, sizeof(in), "%s", integ_path(t, "in"));
        snprintf(copy, sizeof(copy), "%s", integ_path(t, "copy"));
        f = fopen(in, "we");
        assert_non_null(f);
        for (size_t i = 0; i < STDIN_BYTES; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                assert_int_not_equal(fputc((int)(x & 0xff), f), EOF);
        }
        assert_int_equal(fclose(f), 0);
        vm_with_counted_sim(t);
        snprintf(script, sizeof(script), "{ dd bs=%u count=1 iflag=fullblock 2>/dev/null; %s; cat; } > %s; exit 7",
                 STDIN_FIRST, integ_wait_go(t), copy);
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--stdin", in, "--", "sh", "-c", script, NULL);
        pid = integ_detached_pid(t, &res);
        snprintf(script, sizeof(script), "cat; %s; exit 3", integ_wait_go(t));
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--stdin", "/dev/null", "--", "sh", "-c", script, NULL);
        ended = integ_detached_pid(t, &res);
        for (int waited = 0; stat(copy, &st) < 0 || (size_t)st.st_size < STDIN_FIRST; waited += 20) {
                if (waited >= INTEG_WAIT_MS)
                        fail_msg("the reader did not start");
                integ_sleep_ms(20);
        }
        upgrade_ok(t);
        integ_touch(integ_path(t, "go"));
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 7);
        integ_result_done(&res);
        snprintf(pid_s, sizeof(pid_s), "%ld", ended);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        /* hcsshim's guest forgets an exec's exit once a wait had it; never 0 either way. */
        if (res.code != 3 && !(t->cfg->upstream && res.code == 255))
                integ_assert_code(t, &res, 3);
        integ_result_done(&res);
        a = integ_read_file(in, &la);
        c = integ_read_file(copy, &lc);
        assert_non_null(a);
        assert_non_null(c);
        if (la != lc || memcmp(a, c, la) != 0) {
                integ_dump_daemon_log(t);
                fail_msg("the copy has %zu bytes, the input %zu (or they differ)", lc, la);
        }
        free(a);
        free(c);
        /* The guest never noticed: the same bridge connection, no stdio redial. */
        assert_int_equal(sim_stat(t, "bridge_connects"), 1);
        assert_int_equal(sim_stat(t, "stdio_redials"), 0);
}

static void test_writer_goes_on_through_the_upgrade(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX];
        long pid;

        snprintf(out, sizeof(out), "%s", integ_path(t, "out"));
        vm_with_counted_sim(t);
        pid = start_writer(t, out);
        wait_more_lines(t, out, 20);
        upgrade_ok(t);
        /* The new daemon relays what the guest writes now. */
        wait_more_lines(t, out, 20);
        /* And a second upgrade, from the daemon that took over. */
        upgrade_ok(t);
        wait_more_lines(t, out, 20);
        finish_writer(t, pid, out);
}

#define LOG_CAP 2048 /* --log-size-max 2K */

/* The writer of the k8s-file log tests: a line every 5 ms into log (capped at LOG_CAP, files
 * kept) until the "stop" file, then "end" and exit 7; started with id (or none: its pid names it),
 * returns once 20 lines are in. */
static void start_logged_writer(struct integ *t, const char *log, const char *id, char *ret_who, size_t who_len)
{
        char spec[INTEG_PATH_MAX + 16], script[INTEG_PATH_MAX * 2];
        struct integ_result res;

        snprintf(spec, sizeof(spec), "k8s-file:%s", log);
        snprintf(script, sizeof(script),
                 "i=0; while [ ! -e %s ]; do echo \"line $i\"; i=$((i+1)); sleep 0.005; done; echo end; exit 7",
                 integ_path(t, "stop"));
        if (id) {
                integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", id, "--log", spec, "--log-size-max", "2K",
                          "--log-max-files", "1000", "--", "sh", "-c", script, NULL);
                integ_assert_code(t, &res, 0);
                integ_result_done(&res);
                snprintf(ret_who, who_len, "%s", id);
        } else {
                integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--log", spec, "--log-size-max", "2K",
                          "--log-max-files", "1000", "--", "sh", "-c", script, NULL);
                snprintf(ret_who, who_len, "%ld", integ_detached_pid(t, &res));
        }
        integ_wait_logged(t, log, LOG_CAP, 20);
}

/* Stops that writer: its exit is 7, and every line is in the log's files exactly once, in order
 * (more than 40 of them), as CRI records parsed into *ret. */
static void finish_logged_writer(struct integ *t, const char *log, const char *who, struct integ_cri_log *ret)
{
        struct integ_result res;
        size_t len;
        char *all;

        integ_touch(integ_path(t, "stop"));
        integ_cli(t, &res, NULL, "wait", "demo", who, NULL);
        integ_assert_code(t, &res, 7);
        integ_result_done(&res);
        all = integ_read_rotated(log, LOG_CAP, &len);
        integ_cri_log_parse_text(all, len, ret);
        free(all);
        assert_true(check_sequence_in(t, ret->text[0]) > 40);
}

/* A k8s-file log (as every Kubernetes pod's) through two upgrades: its fd goes along as open as it
 * was, with its cap, file count and size, so every line is in the log exactly once, in order, as
 * valid CRI records, and no file passes the cap across a hand-over (more than a file's worth comes
 * after each). Its attach backlog (the output has no endpoint) does not refuse the upgrade. */
static void test_k8s_file_log_goes_on_through_the_upgrade(void **state)
{
        struct integ *t = *state;
        char log[INTEG_PATH_MAX], who[32];
        struct integ_cri_log l;

        snprintf(log, sizeof(log), "%s", integ_path(t, "c.log"));
        vm_with_counted_sim(t);
        start_logged_writer(t, log, NULL, who, sizeof(who));
        upgrade_ok(t);
        integ_wait_logged(t, log, LOG_CAP, LOG_CAP / 40);
        upgrade_ok(t);
        integ_wait_logged(t, log, LOG_CAP, LOG_CAP / 40);
        finish_logged_writer(t, log, who, &l);
        assert_string_equal(l.text[1], "");
        integ_cri_log_done(&l);
        assert_int_equal(sim_stat(t, "bridge_connects"), 1);
        assert_int_equal(sim_stat(t, "stdio_redials"), 0);
}

/* A process logging to journald through two upgrades: the new daemons write its entries with the
 * same fields (conmon's, named by its exec id, and the VM's), every line exactly once, in order.
 * The writer pauses at each upgrade: journald's socket queues only max_dgram_qlen (10) entries, and
 * the test reads them only between CLI calls. */
static void test_journald_log_goes_on_through_the_upgrade(void **state)
{
        struct integ_journal *j = integ_journal_or_skip(state);
        struct integ_journal_entries all = { .n = 0 };
        char script[INTEG_PATH_MAX * 3], *text = NULL;
        struct integ_result res;
        struct integ *t;

        t = j->t;
        snprintf(script, sizeof(script),
                 "i=0; for go in %s %s end; do for k in 1 2 3 4 5; do echo \"line $i\"; i=$((i+1)); done; "
                 "[ $go = end ] && break; until [ -e $go ]; do sleep 0.01; done; done; echo end; exit 7",
                 integ_path(t, "go1"), integ_path(t, "go2"));
        vm_with_counted_sim(t);
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--id", "journal-upgrade", "--log", "journald", "--", "sh",
                  "-c", script, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        integ_journal_wait(j, &all, 4);
        upgrade_ok(t);
        integ_touch(integ_path(t, "go1"));
        integ_journal_wait(j, &all, 9);
        upgrade_ok(t);
        integ_touch(integ_path(t, "go2"));
        integ_cli(t, &res, NULL, "wait", "demo", "journal-upgrade", NULL);
        integ_assert_code(t, &res, 7);
        integ_result_done(&res);
        integ_journal_collect(j->sock, &all);
        for (unsigned i = 0; i < all.n; i++) {
                integ_assert_contains(all.e[i], "\nCONTAINER_ID=journal-upgr\n");
                integ_assert_contains(all.e[i], "\nPRIORITY=6\n");
        }
        text = integ_journal_stdout_text(t, &all, "journal-upgrade", "demo");
        assert_int_equal(check_sequence_in(t, text), 15);
        free(text);
        integ_journal_entries_done(&all);
        assert_int_equal(sim_stat(t, "bridge_connects"), 1);
        assert_int_equal(sim_stat(t, "stdio_redials"), 0);
}

/* The event on the line at *line (NULL if it does not parse), and *line moves past it. */
static struct json_object *next_event(const char **line)
{
        const char *end = strchr(*line, '\n');
        char *copy = strndup(*line, end ? (size_t)(end - *line) : strlen(*line));
        struct json_object *ev = copy ? json_tokener_parse(copy) : NULL;

        free(copy);
        *line = end ? end + 1 : *line + strlen(*line);
        return ev;
}

/* How many events of kind name VM vm (one JSON object per line). */
static unsigned count_events(const char *all, const char *kind, const char *vm)
{
        unsigned n = 0;

        for (const char *line = all; *line;) {
                struct json_object *ev = next_event(&line), *k, *v;

                if (ev && json_object_object_get_ex(ev, "kind", &k) && json_object_object_get_ex(ev, "vm", &v) &&
                    strcmp(json_object_get_string(k), kind) == 0 && strcmp(json_object_get_string(v), vm) == 0)
                        n++;
                json_object_put(ev);
        }
        return n;
}

/* Whether the events' seqs run 1, 2, 3, ... with none missing and none twice. */
static bool seqs_consecutive(const char *all)
{
        int64_t want = 1;

        for (const char *line = all; *line; want++) {
                struct json_object *ev = next_event(&line), *seq;
                bool ok = ev && json_object_object_get_ex(ev, "seq", &seq) && json_object_get_int64(seq) == want;

                json_object_put(ev);
                if (!ok)
                        return false;
        }
        return true;
}

/* A follower of `vsockmux events` through the upgrade dials the new daemon and goes on from the
 * last seq it saw (the ring went along): nothing missed, nothing twice, and a VM taken over live
 * is not added a second time. */
static void test_events_go_on_through_the_upgrade_without_a_second_vm_added(void **state)
{
        struct integ *t = *state;
        char events[INTEG_PATH_MAX], hv[INTEG_PATH_MAX];
        char *args[] = { "events", "--json", "--since", "0", NULL };
        struct integ_result res;
        char *all;
        pid_t follower;

        snprintf(events, sizeof(events), "%s", integ_path(t, "events.json"));
        snprintf(hv, sizeof(hv), "%s", integ_hvsock(t, "marker"));
        vm_with_counted_sim(t);
        follower = integ_spawn(t, integ_cli_argv(t, args), NULL, events, NULL);
        assert_true(integ_wait_file_contains(events, "bridge-connected", INTEG_WAIT_MS));
        upgrade_ok(t);
        integ_cli(t, &res, NULL, "vm", "add", "marker", "--hvsock", hv, NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
        assert_true(integ_wait_file_contains(events, "\"marker\"", INTEG_WAIT_MS));
        integ_kill(t, follower, SIGTERM);
        all = integ_read_file(events, NULL);
        assert_non_null(all);
        if (count_events(all, "vm-added", "demo") != 1)
                fail_msg("the follower heard 'demo' added %u times:\n%s", count_events(all, "vm-added", "demo"), all);
        assert_int_equal(count_events(all, "vm-added", "marker"), 1);
        if (count_events(all, "bridge-connected", "demo") != 1)
                fail_msg("the guest connected once, the follower heard it %u times:\n%s",
                         count_events(all, "bridge-connected", "demo"), all);
        if (!seqs_consecutive(all))
                fail_msg("the follower's events do not number 1, 2, 3, ...:\n%s", all);
        free(all);
}

/* An attached `vsockmux exec` through the upgrade: its output sockets go with the VM, and the CLI
 * dials the control socket again when the old daemon closes it, waiting again by exec id. */
static void test_attached_exec_goes_on_through_the_upgrade(void **state)
{
        struct integ *t = *state;
        char out[INTEG_PATH_MAX], err[INTEG_PATH_MAX], script[INTEG_PATH_MAX * 2];
        char *args[] = { (char *)"exec", (char *)"demo", (char *)"--", (char *)"sh", (char *)"-c", script, NULL };
        int code = -1;
        pid_t cli;

        snprintf(out, sizeof(out), "%s", integ_path(t, "out"));
        snprintf(err, sizeof(err), "%s", integ_path(t, "cli.err"));
        snprintf(script, sizeof(script),
                 "i=0; while [ ! -e %s ]; do echo \"line $i\"; i=$((i+1)); sleep 0.005; done; echo end; exit 5",
                 integ_path(t, "stop"));
        vm_with_counted_sim(t);
        cli = integ_spawn(t, integ_cli_argv(t, args), NULL, out, err);
        wait_more_lines(t, out, 20);
        upgrade_ok(t);
        wait_more_lines(t, out, 20);
        integ_touch(integ_path(t, "stop"));
        assert_int_equal(integ_reap(t, cli, INTEG_WAIT_MS, &code), 0);
        if (code != 5) {
                char *e = integ_read_file(err, NULL);

                integ_dump_daemon_log(t);
                fail_msg("the attached exec ended with %d, not 5: %s", code, e ? e : "");
        }
        check_lines(t, out);
}

/* The old daemon serves on after a failed upgrade, with the writer's output intact. */
static void expect_rolled_back_in(struct integ *t, const char *needle, const char *binary, const char *timeout)
{
        char out[INTEG_PATH_MAX], pid_s[16];
        char *wait_args[] = { (char *)"wait", (char *)"demo", pid_s, NULL };
        struct integ_result res;
        const char *wait_out;
        int code = -1;
        pid_t waiter;
        long pid;

        snprintf(out, sizeof(out), "%s", integ_path(t, "out"));
        vm_with_counted_sim(t);
        pid = start_writer(t, out);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        wait_out = integ_path(t, "wait.out");
        /* A Wait in flight on the old daemon: a rollback keeps it waiting on the VM taken back. */
        waiter = integ_spawn(t, integ_cli_argv(t, wait_args), NULL, wait_out, NULL);
        wait_more_lines(t, out, 20);
        integ_cli(t, &res, NULL, "upgrade", "--binary", binary, "--timeout", timeout, NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, needle);
        integ_assert_contains(res.err, "serves on");
        integ_result_done(&res);
        if (!integ_alive(t, t->daemon))
                fail_msg("the old daemon is gone");
        wait_more_lines(t, out, 20);
        finish_writer(t, pid, out);
        assert_int_equal(integ_reap(t, waiter, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 7);
}

static void expect_rolled_back(struct integ *t, const char *needle, const char *binary)
{
        expect_rolled_back_in(t, needle, binary, "30");
}

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

static void test_missing_binary_leaves_the_vm_served(void **state)
{
        expect_rolled_back(*state, "cannot run /nonexistent/vsockmuxd", "/nonexistent/vsockmuxd");
}

/* This one got the VM's fds: the old daemon takes its VM back from what it sent. */
static void test_binary_that_exits_at_start_gives_the_vm_back(void **state)
{
        struct integ *t = *state;

        expect_rolled_back(t, "exited with status 1 before it was ready", script(t, "exits", "exit 1"));
}

/* This one holds the handover unread until it is killed at the deadline. */
static void test_binary_not_ready_in_time_gives_the_vm_back(void **state)
{
        struct integ *t = *state;

        expect_rolled_back_in(t, "was not ready within 1000 ms", script(t, "hangs", "exec sleep 600"), "1");
}

static void test_binary_that_refuses_gives_the_vm_back(void **state)
{
        struct integ *t = *state;
        char body[INTEG_PATH_MAX * 2];

        snprintf(body, sizeof(body), "exec %s/tests/integration/handover-peer refuse 'not this state'",
                 getenv("VSOCKMUX_BUILD_ROOT"));
        expect_rolled_back(t, "refused the handover: not this state", script(t, "refuses", body));
}

/* A rollback takes a k8s-file log back too: the old daemon writes on into the fd it sent, at its
 * cap, every line once. */
static void test_refused_upgrade_gives_the_k8s_file_log_back(void **state)
{
        struct integ *t = *state;
        char log[INTEG_PATH_MAX], body[INTEG_PATH_MAX * 2], who[32];
        struct integ_cri_log l;
        struct integ_result res;

        snprintf(log, sizeof(log), "%s", integ_path(t, "c.log"));
        snprintf(body, sizeof(body), "exec %s/tests/integration/handover-peer refuse 'not this state'",
                 getenv("VSOCKMUX_BUILD_ROOT"));
        vm_with_counted_sim(t);
        start_logged_writer(t, log, "logged", who, sizeof(who));
        integ_cli(t, &res, NULL, "upgrade", "--binary", script(t, "refuses", body), NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_contains(res.err, "refused the handover: not this state");
        integ_result_done(&res);
        integ_wait_logged(t, log, LOG_CAP, LOG_CAP / 40);
        finish_logged_writer(t, log, "logged", &l);
        integ_cri_log_done(&l);
}

/* The real daemon as the new binary, refusing after it received the VMs: their hvsock path is
 * outside its --hvsock-root, so it cannot take them over, answers why and exits 1; the old daemon
 * takes them back. */
static void test_new_daemon_that_cannot_adopt_gives_the_vm_back(void **state)
{
        struct integ *t = *state;
        char body[INTEG_PATH_MAX * 3];

        snprintf(body, sizeof(body), "mkdir -p %s/other-root && exec %s \"$@\" --hvsock-root %s/other-root", t->dir,
                 t->cfg->daemon, t->dir);
        expect_rolled_back(t, "cannot take over VM demo", script(t, "elsewhere", body));
}

/* An endpoint that does not drain keeps its VM from being held quiet (what the guest wrote before
 * the hold must reach it first): the upgrade fails naming the VM once its --timeout passed,
 * nothing was handed over, and every byte still arrives once. */
static void test_vm_not_quiet_in_time_is_named_and_serves_on(void **state)
{
        struct integ *t = *state;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char sock[INTEG_PATH_MAX], err[INTEG_PATH_MAX], pid_s[16], buf[65536];
        struct integ_result res;
        long pid, total = 0;
        int lfd, cfd;
        ssize_t n;

        snprintf(sock, sizeof(sock), "%s", integ_path(t, "stalled.sock"));
        snprintf(err, sizeof(err), "%s", integ_path(t, "writer.err"));
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(lfd >= 0);
        memcpy(sa.sun_path, sock, strlen(sock) + 1);
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 1), 0);
        vm_with_counted_sim(t);
        /* Far more than the sockets on the way hold, so the guest's socket is never empty. */
        integ_cli(t, &res, NULL, "exec", "demo", "--detach", "--stdout", sock, "--stderr", err, "--", "sh", "-c",
                  "head -c 33554432 /dev/zero; exit 6", NULL);
        integ_assert_code(t, &res, 0);
        pid = strtol(res.out, NULL, 10);
        integ_result_done(&res);
        cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        assert_true(cfd >= 0);
        /* Flowing (the guest dialled and the relay wrote to us), then we stop reading. */
        for (int i = 0;; i++) {
                struct json_object *all, *p = integ_ps_find(t, "demo", pid, &all);
                int64_t got = integ_json_int(integ_json_get(p, "bytes"), "stdout");

                json_object_put(all);
                if (got >= 65536)
                        break;
                if (i > INTEG_WAIT_MS / 20)
                        fail_msg("stdout never flowed (%lld bytes)", (long long)got);
                integ_sleep_ms(20);
        }
        integ_cli(t, &res, NULL, "upgrade", "--timeout", "1", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "VM demo was not quiet within 1000 ms");
        integ_assert_contains(res.err, "serves on");
        integ_result_done(&res);
        while ((n = read(cfd, buf, sizeof(buf))) > 0)
                total += n;
        assert_int_equal(n, 0);
        assert_int_equal(total, 33554432);
        close(cfd);
        close(lfd);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 6);
        integ_result_done(&res);
        assert_int_equal(sim_stat(t, "bridge_connects"), 1);
        assert_int_equal(sim_stat(t, "stdio_redials"), 0);
}

/* An attach socket is not handed over yet: refused by name before anything is held. */
static void test_vm_the_hand_over_cannot_move_refuses_by_name(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char path[INTEG_PATH_MAX];
        long pid;

        vm_with_counted_sim(t);
        pid = integ_exec_detached(t, "demo", integ_alive_loop(t));
        integ_attach_path(t, "demo", pid, path, sizeof(path));
        integ_cli(t, &res, NULL, "upgrade", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "in VM demo has an attach socket");
        integ_assert_contains(res.err, "serves on");
        integ_result_done(&res);
        integ_wait_bridge(t, "demo", "connected");
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_writer_goes_on_through_the_upgrade),
                cmocka_unit_test(test_k8s_file_log_goes_on_through_the_upgrade),
                cmocka_unit_test_setup_teardown(test_journald_log_goes_on_through_the_upgrade, integ_journal_setup,
                                                integ_journal_teardown),
                cmocka_unit_test(test_stdin_reader_goes_on_through_the_upgrade),
                cmocka_unit_test(test_attached_exec_goes_on_through_the_upgrade),
                cmocka_unit_test(test_events_go_on_through_the_upgrade_without_a_second_vm_added),
                cmocka_unit_test(test_record_follows_the_upgrade),
                cmocka_unit_test(test_missing_binary_leaves_the_vm_served),
                cmocka_unit_test(test_binary_that_exits_at_start_gives_the_vm_back),
                cmocka_unit_test(test_binary_not_ready_in_time_gives_the_vm_back),
                cmocka_unit_test(test_binary_that_refuses_gives_the_vm_back),
                cmocka_unit_test(test_refused_upgrade_gives_the_k8s_file_log_back),
                cmocka_unit_test(test_new_daemon_that_cannot_adopt_gives_the_vm_back),
                cmocka_unit_test(test_vm_not_quiet_in_time_is_named_and_serves_on),
                cmocka_unit_test(test_vm_the_hand_over_cannot_move_refuses_by_name),
        };

        if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
                perror("prctl");
                return 1;
        }
        return integ_run("integration-upgrade-vms", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
