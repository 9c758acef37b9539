/* Host-side fault injection: endpoints that stall, vanish or fill up, fd exhaustion, SIGTERM under load. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

/* Outputs are `seq 1 N`: any loss, duplicate or reordering shows as a mismatch. */
#define FAULTS_STALL_LINES 3000000u  /* ~21 MB: far more than every buffer between process and endpoint */
#define FAULTS_OTHER_LINES 1000000u  /* ~6.9 MB through the same VM while the stall lasts */
#define FAULTS_VANISH_LINES 2000000u /* ~14 MB, most of it after the reader left */
#define FAULTS_SIDE_LINES 300000u    /* ~2 MB on the streams that must not notice */
#define FAULTS_VANISH_READ (64u * 1024u)
/* A stalled stream holds at most 2 * stream_max_bufs + 1 pool buffers (17 x 64 KiB by default);
 * this bound is loose on purpose and still far below what the stalled process tried to write. */
#define FAULTS_HELD_BOUND (4u << 20)
#define FAULTS_TMPFS_SIZE "256k"
#define FAULTS_TMPFS_BYTES (256u * 1024u)
#define FAULTS_FULL_LINES 200000u     /* ~1.3 MB into a 256 KiB tmpfs */
#define FAULTS_NOFILE 64u             /* the daemon's RLIMIT_NOFILE in the fd exhaustion test */
#define FAULTS_NOFILE_HOLDER_ROOM 16u /* stop adding holders when fewer fds than this are left */
#define FAULTS_NOFILE_LEFT 2u         /* then fill with idle control connections down to this */
/* The daemon's soft and hard RLIMIT_NOFILE in the stream cap test: the hard limit leaves relay/'s
 * 64 fds of headroom and its 256 splice pipes (512 fds) and room for 4 streams of two fds. */
#define FAULTS_CAP_SOFT_NOFILE 128u
#define FAULTS_CAP_HARD_NOFILE (64u + 512u + 8u)
#define FAULTS_CAP_STREAMS_MAX 16u
#define FAULTS_LONG_LINES 200000u
#define FAULTS_STOP_STREAMS 100u
#define FAULTS_STOP_FAST_EVERY 25u /* every 25th of them writes as fast as it can */
#define FAULTS_STOP_BLOCK 20000u   /* lines per seq of a fast writer */

/* ---- helpers ---- */

static char *seq_text(unsigned first, unsigned last, size_t *ret_len)
{
        size_t cap = (size_t)(last - first + 1) * 11 + 1, len = 0;
        char *s = malloc(cap);

        assert_non_null(s);
        for (unsigned i = first; i <= last; i++)
                len += (size_t)snprintf(s + len, cap - len, "%u\n", i);
        *ret_len = len;
        return s;
}

static void assert_file_is_seq(const char *path, unsigned last)
{
        size_t len, want_len;
        char *got = integ_read_file(path, &len);
        char *want = seq_text(1, last, &want_len);

        if (!got)
                fail_msg("cannot read %s: %s", path, strerror(errno));
        if (len != want_len || memcmp(got, want, len) != 0) {
                size_t i = 0;

                while (i < len && i < want_len && got[i] == want[i])
                        i++;
                fail_msg("%s: %zu bytes, expected %zu (seq 1 %u); first difference at byte %zu", path, len, want_len,
                         last, i);
        }
        free(got);
        free(want);
}

/* True if buf (len bytes) is exactly the start of "1\n2\n3\n...", the last line possibly cut. */
static bool is_seq_prefix(const char *buf, size_t len)
{
        char line[16];
        size_t off = 0;

        for (unsigned i = 1; off < len; i++) {
                int n = snprintf(line, sizeof(line), "%u\n", i);
                size_t m = len - off < (size_t)n ? len - off : (size_t)n;

                if (memcmp(buf + off, line, m) != 0)
                        return false;
                off += m;
        }
        return true;
}

static int unix_listen(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_true(strlen(path) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)
                fail_msg("listen on %s: %s", path, strerror(errno));
        return fd;
}

static int unix_connect(const char *path)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_true(strlen(path) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                return -errno;
        }
        return fd;
}

/* Accepts the daemon's connection and sets a generous receive timeout (a hang fails, slowness does not). */
static int accept_endpoint(int lfd)
{
        struct timeval tv = { .tv_sec = INTEG_WAIT_MS / 1000 };
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
        return fd;
}

/* Reads until EOF (or max bytes when max > 0). */
static char *read_stream(struct integ *t, int fd, size_t max, size_t *ret_len)
{
        size_t len = 0, cap = 1 << 20;
        char *buf = malloc(cap);

        assert_non_null(buf);
        for (;;) {
                ssize_t n;

                if (max > 0 && len >= max)
                        break;
                if (cap - len < 65536) {
                        cap *= 2;
                        buf = realloc(buf, cap);
                        assert_non_null(buf);
                }
                n = recv(fd, buf + len, max > 0 ? max - len : 65536, 0);
                if (n == 0)
                        break;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        integ_dump_daemon_log(t);
                        fail_msg("reading a socket endpoint: %s after %zu bytes", strerror(errno), len);
                }
                len += (size_t)n;
        }
        *ret_len = len;
        return buf;
}

/* `exec VM --detach --stdout OUT [--stderr ERR] -- sh -c SCRIPT`: 0 and the pid, or the CLI's code. */
static int exec_try(struct integ *t, const char *out, const char *err, const char *script, struct integ_result *res)
{
        char *args[16];
        size_t n = 0;

        args[n++] = (char *)"exec";
        args[n++] = (char *)"demo";
        args[n++] = (char *)"--detach";
        args[n++] = (char *)"--stdout";
        args[n++] = (char *)out;
        if (err) {
                args[n++] = (char *)"--stderr";
                args[n++] = (char *)err;
        }
        args[n++] = (char *)"--";
        args[n++] = (char *)"sh";
        args[n++] = (char *)"-c";
        args[n++] = (char *)script;
        args[n] = NULL;
        integ_cliv(t, res, NULL, args);
        return res->code;
}

static long exec_detached(struct integ *t, const char *out, const char *err, const char *script)
{
        struct integ_result res;
        char *end;
        long pid;

        exec_try(t, out, err, script, &res);
        integ_assert_code(t, &res, 0);
        pid = strtol(res.out, &end, 10);
        if (pid <= 0 || strcmp(end, "\n") != 0)
                fail_msg("exec --detach printed '%s', not a pid", res.out);
        integ_result_done(&res);
        return pid;
}

/* Whether the file starts with `prefix` within timeout_ms. Reads only the prefix: the fast writers'
 * files grow faster than a sanitized test could read them whole. */
static bool file_starts_with(const char *path, const char *prefix, int timeout_ms)
{
        size_t n = strlen(prefix);
        char buf[64];

        assert_true(n < sizeof(buf));
        for (int waited = 0;; waited += 50) {
                int fd = open(path, O_RDONLY | O_CLOEXEC);

                if (fd >= 0) {
                        ssize_t k = pread(fd, buf, n, 0);

                        close(fd);
                        if (k == (ssize_t)n && memcmp(buf, prefix, n) == 0)
                                return true;
                }
                if (waited >= timeout_ms)
                        return false;
                integ_sleep_ms(50);
        }
}

/* `vsockmux wait demo PID`: the process's exit code. */
static int wait_code(struct integ *t, long pid)
{
        struct integ_result res;
        char pid_s[32];
        int code;

        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        if (strncmp(res.out, "exited ", 7) != 0) {
                integ_dump_daemon_log(t);
                fail_msg("wait %ld: exit %d, stdout '%s', stderr '%s'", pid, res.code, res.out, res.err);
        }
        code = res.code;
        integ_result_done(&res);
        return code;
}

static void assert_daemon_serves(struct integ *t)
{
        struct json_object *s = integ_cli_json(t, "stats", "--json", NULL);

        assert_true(integ_json_int(s, "vms") >= 1);
        json_object_put(s);
}

/* Does a line of the daemon's log hold every one of the (NULL-terminated) needles? */
static bool log_has_line(struct integ *t, ...)
{
        char *log = integ_read_file(t->daemon_log, NULL);
        bool found = false;

        assert_non_null(log);
        for (char *line = log, *next; line && *line && !found; line = next) {
                va_list ap;
                bool all = true;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                va_start(ap, t);
                for (const char *n; (n = va_arg(ap, const char *));)
                        if (!strstr(line, n))
                                all = false;
                va_end(ap);
                found = all;
        }
        free(log);
        return found;
}

/* Stops the test's daemon (it must exit 0) and starts a new one with the same socket, state dir
 * and log (appended), in this process's mount namespace, with RLIMIT_NOFILE soft and hard if
 * hard is nonzero. */
static void restart_daemon_nofile(struct integ *t, unsigned soft, unsigned hard)
{
        char *argv[] = {
                (char *)t->cfg->daemon,
                (char *)"--socket",
                t->sock,
                (char *)"--state-dir",
                t->state_dir,
                (char *)"--hvsock-root",
                t->dir,
                (char *)"--log-level",
                (char *)"debug",
                NULL,
        };
        int code, fd, waited = 0;
        pid_t pid;

        assert_int_equal(kill(t->daemon, SIGTERM), 0);
        assert_int_equal(integ_reap(t, t->daemon, INTEG_WAIT_MS, &code), 0);
        t->daemon = 0;
        assert_int_equal(code, 0);

        fd = open(t->daemon_log, O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_true(fd >= 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct rlimit rl = { .rlim_cur = soft, .rlim_max = hard };

                if ((hard && setrlimit(RLIMIT_NOFILE, &rl) < 0) || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
                        _exit(126);
                execv(argv[0], argv);
                _exit(127);
        }
        close(fd);
        t->daemon = pid;
        /* Ready means accepting. */
        for (;;) {
                int c = unix_connect(t->sock);
                int status;

                if (c >= 0) {
                        close(c);
                        break;
                }
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        t->daemon = 0;
                        integ_dump_daemon_log(t);
                        fail_msg("the restarted vsockmuxd exited");
                }
                if (waited >= INTEG_WAIT_MS) {
                        integ_dump_daemon_log(t);
                        fail_msg("the restarted vsockmuxd did not listen");
                }
                integ_sleep_ms(10);
                waited += 10;
        }
}

/* With RLIMIT_NOFILE = nofile if nonzero. */
static void restart_daemon(struct integ *t, unsigned nofile)
{
        restart_daemon_nofile(t, nofile, nofile);
}

static unsigned count_fds(pid_t pid)
{
        char path[64];
        unsigned n = 0;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
        d = opendir(path);
        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d));)
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static json_object *ps_entry(struct integ *t, long pid, struct json_object **ret_all)
{
        return integ_ps_find(t, "demo", pid, ret_all);
}

/* ---- the tests ---- */

static void test_stalled_endpoint_backpressures_its_process_only_and_loses_nothing(void **state)
{
        struct integ *t = *state;
        char stalled[INTEG_PATH_MAX], done[INTEG_PATH_MAX], other[INTEG_PATH_MAX], script[512];
        struct json_object *all, *p, *stats;
        size_t len, want_len;
        char *got, *want;
        long stall_pid, other_pid;
        int lfd, fd;

        integ_vm_with_sim(t, "demo");
        snprintf(stalled, sizeof(stalled), "%s", integ_path(t, "stalled.sock"));
        snprintf(done, sizeof(done), "%s", integ_path(t, "stalled.done"));
        snprintf(other, sizeof(other), "%s", integ_path(t, "other.out"));
        lfd = unix_listen(stalled);

        /* The daemon connects at exec; nobody accepts, so nobody reads. */
        snprintf(script, sizeof(script), "seq 1 %u; touch %s", FAULTS_STALL_LINES, done);
        stall_pid = exec_detached(t, stalled, NULL, script);

        snprintf(script, sizeof(script), "seq 1 %u", FAULTS_OTHER_LINES);
        other_pid = exec_detached(t, other, NULL, script);
        assert_int_equal(wait_code(t, other_pid), 0);
        assert_file_is_seq(other, FAULTS_OTHER_LINES);

        /* Backpressure: the stalled process is still blocked in its writes, and the daemon holds a
         * bounded amount for it. */
        p = ps_entry(t, stall_pid, &all);
        assert_string_equal(integ_json_str(p, "state"), "running");
        assert_true((uint64_t)integ_json_int(integ_json_get(p, "bytes"), "stdout") < (uint64_t)FAULTS_STALL_LINES);
        json_object_put(all);
        if (access(done, F_OK) == 0)
                fail_msg("the process writing to a stalled endpoint finished: nothing held it back");
        stats = integ_cli_json(t, "stats", "--json", NULL);
        {
                struct json_object *pool = integ_json_get(stats, "buffer_pool");
                uint64_t held = (uint64_t)integ_json_int(pool, "buffers_in_use") *
                                (uint64_t)integ_json_int(pool, "buffer_size");

                if (held > FAULTS_HELD_BOUND)
                        fail_msg("the daemon holds %llu bytes for a stalled endpoint", (unsigned long long)held);
        }
        json_object_put(stats);

        /* The reader wakes up: every byte, in order. */
        fd = accept_endpoint(lfd);
        got = read_stream(t, fd, 0, &len);
        want = seq_text(1, FAULTS_STALL_LINES, &want_len);
        if (len != want_len || memcmp(got, want, len) != 0)
                fail_msg("stalled endpoint got %zu bytes, expected %zu (or different content)", len, want_len);
        free(got);
        free(want);
        close(fd);
        close(lfd);
        assert_int_equal(wait_code(t, stall_pid), 0);
        assert_int_equal(access(done, F_OK), 0);
}

static void test_vanished_endpoint_fails_only_its_stream(void **state)
{
        struct integ *t = *state;
        char vanish[INTEG_PATH_MAX], err[INTEG_PATH_MAX], other[INTEG_PATH_MAX], script[512], needle[64];
        struct json_object *all, *p;
        long pid, other_pid;
        size_t len;
        char *got;
        int lfd, fd;

        integ_vm_with_sim(t, "demo");
        snprintf(vanish, sizeof(vanish), "%s", integ_path(t, "vanish.sock"));
        snprintf(err, sizeof(err), "%s", integ_path(t, "vanish.err"));
        snprintf(other, sizeof(other), "%s", integ_path(t, "other.out"));
        lfd = unix_listen(vanish);

        snprintf(script, sizeof(script), "seq 1 %u >&2 & seq 1 %u; wait; exit 7", FAULTS_SIDE_LINES,
                 FAULTS_VANISH_LINES);
        pid = exec_detached(t, vanish, err, script);
        snprintf(script, sizeof(script), "seq 1 %u", FAULTS_SIDE_LINES);
        other_pid = exec_detached(t, other, NULL, script);

        /* The reader takes a little, checks it, and goes away mid-stream. */
        fd = accept_endpoint(lfd);
        got = read_stream(t, fd, FAULTS_VANISH_READ, &len);
        assert_int_equal(len, FAULTS_VANISH_READ);
        assert_true(is_seq_prefix(got, len));
        free(got);
        close(fd);
        close(lfd);

        /* The process runs to its own end; its other stream and the other process lose nothing. */
        assert_int_equal(wait_code(t, pid), 7);
        assert_int_equal(wait_code(t, other_pid), 0);
        assert_file_is_seq(err, FAULTS_SIDE_LINES);
        assert_file_is_seq(other, FAULTS_SIDE_LINES);

        /* Reported for that stream only. */
        snprintf(needle, sizeof(needle), "process %ld: stdout stream", pid);
        if (!log_has_line(t, needle, "Broken pipe", NULL)) {
                integ_dump_daemon_log(t);
                fail_msg("no log line says %ld's stdout endpoint broke", pid);
        }
        snprintf(needle, sizeof(needle), "process %ld: stderr stream", pid);
        assert_false(log_has_line(t, needle, NULL));
        snprintf(needle, sizeof(needle), "process %ld: stdout stream", other_pid);
        assert_false(log_has_line(t, needle, NULL));
        p = ps_entry(t, pid, &all);
        assert_string_equal(integ_json_str(integ_json_get(p, "exit"), "kind"), "exited");
        assert_true((uint64_t)integ_json_int(integ_json_get(p, "bytes"), "stdout") >= FAULTS_VANISH_READ);
        {
                size_t side_len;

                free(seq_text(1, FAULTS_SIDE_LINES, &side_len));
                assert_int_equal(integ_json_int(integ_json_get(p, "bytes"), "stderr"), side_len);
        }
        json_object_put(all);
        assert_daemon_serves(t);
}

static void test_full_disk_fails_only_that_file_stream(void **state)
{
        struct integ *t = *state;
        char full[INTEG_PATH_MAX], out[INTEG_PATH_MAX], err[INTEG_PATH_MAX], script[512], needle[64];
        struct json_object *all, *p;
        size_t len;
        char *got;
        long pid;

        snprintf(full, sizeof(full), "%s", integ_path(t, "full"));
        assert_int_equal(mkdir(full, 0755), 0);
        /* A private mount namespace: the tmpfs goes with this process whatever happens. */
        if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", full, "tmpfs", 0, "size=" FAULTS_TMPFS_SIZE) < 0) {
                fprintf(stderr, "SKIP: cannot mount a %s tmpfs: %s\n", FAULTS_TMPFS_SIZE, strerror(errno));
                skip();
        }
        /* The daemon must live in the namespace that has the tmpfs. */
        restart_daemon(t, 0);
        integ_vm_with_sim(t, "demo");

        snprintf(out, sizeof(out), "%s", integ_path(t, "full/out"));
        snprintf(err, sizeof(err), "%s", integ_path(t, "full.err"));
        snprintf(script, sizeof(script), "seq 1 %u >&2 & seq 1 %u; wait; exit 5", FAULTS_SIDE_LINES, FAULTS_FULL_LINES);
        pid = exec_detached(t, out, err, script);

        assert_int_equal(wait_code(t, pid), 5);
        assert_file_is_seq(err, FAULTS_SIDE_LINES);
        /* What fit is there, uncorrupted. */
        got = integ_read_file(out, &len);
        assert_non_null(got);
        assert_true(len > 0);
        assert_true(len <= FAULTS_TMPFS_BYTES);
        assert_true(is_seq_prefix(got, len));
        free(got);

        snprintf(needle, sizeof(needle), "process %ld: stdout stream", pid);
        if (!log_has_line(t, needle, "No space left on device", NULL)) {
                integ_dump_daemon_log(t);
                fail_msg("no log line says %ld's stdout endpoint is full", pid);
        }
        snprintf(needle, sizeof(needle), "process %ld: stderr stream", pid);
        assert_false(log_has_line(t, needle, NULL));
        p = ps_entry(t, pid, &all);
        assert_int_equal(integ_json_int(integ_json_get(p, "bytes"), "stdout"), len);
        json_object_put(all);
        assert_daemon_serves(t);
}

/* Holds a stream of its own until DIR/release appears. */
static void holder_script(struct integ *t, char *buf, size_t len)
{
        snprintf(buf, len, "echo up; echo up >&2; while [ -d %s ] && [ ! -e %s/release ]; do sleep 0.05; done", t->dir,
                 t->dir);
}

static void test_fd_exhaustion_fails_new_execs_clearly_and_keeps_streams_flowing(void **state)
{
        struct integ *t = *state;
        char path[INTEG_PATH_MAX], err_path[INTEG_PATH_MAX], long_out[INTEG_PATH_MAX], script[512];
        long holders[FAULTS_NOFILE], long_pid;
        int fillers[FAULTS_NOFILE];
        unsigned n_holders = 0, n_fillers = 0;
        struct integ_result res;

        /* valgrind keeps fds of its own at the top of the range: at 64 it cannot start the daemon. */
        if (getenv("VSOCKMUX_DAEMON_WRAPPER") && getenv("VSOCKMUX_DAEMON_WRAPPER")[0]) {
                fprintf(stderr, "SKIP: RLIMIT_NOFILE %u leaves no room for the daemon wrapper\n", FAULTS_NOFILE);
                skip();
        }
        restart_daemon(t, FAULTS_NOFILE);
        integ_vm_with_sim(t, "demo");

        /* A stream that is running before the limit is hit and must finish whole after. */
        snprintf(long_out, sizeof(long_out), "%s", integ_path(t, "long.out"));
        snprintf(script, sizeof(script), "seq 1 %u; %s; seq %u %u", FAULTS_LONG_LINES / 2, integ_wait_go(t),
                 FAULTS_LONG_LINES / 2 + 1, FAULTS_LONG_LINES);
        long_pid = exec_detached(t, long_out, NULL, script);
        snprintf(path, sizeof(path), "\n%u\n", FAULTS_LONG_LINES / 2);
        assert_true(integ_wait_file_contains(long_out, path, INTEG_WAIT_MS));

        /* Processes that each hold their streams, while there is clearly room for another. */
        holder_script(t, script, sizeof(script));
        while (FAULTS_NOFILE - count_fds(t->daemon) > FAULTS_NOFILE_HOLDER_ROOM) {
                char name[32];

                assert_true(n_holders < FAULTS_NOFILE);
                snprintf(name, sizeof(name), "holder%u.out", n_holders);
                snprintf(path, sizeof(path), "%s", integ_path(t, name));
                snprintf(name, sizeof(name), "holder%u.err", n_holders);
                snprintf(err_path, sizeof(err_path), "%s", integ_path(t, name));
                holders[n_holders++] = exec_detached(t, path, err_path, script);
                /* Both of its guest connections are in. */
                assert_true(integ_wait_file_contains(path, "up\n", INTEG_WAIT_MS));
                assert_true(integ_wait_file_contains(err_path, "up\n", INTEG_WAIT_MS));
        }
        /* Then idle control connections, one fd each, until FAULTS_NOFILE_LEFT are left: enough for
         * a client to be heard (control connections of finished CLIs may still close, which only
         * leaves more), not enough for an exec. */
        for (;;) {
                unsigned before = count_fds(t->daemon), now;
                int fd;

                if (FAULTS_NOFILE - before <= FAULTS_NOFILE_LEFT)
                        break;
                assert_true(n_fillers < FAULTS_NOFILE);
                fd = unix_connect(t->sock);
                assert_true(fd >= 0);
                fillers[n_fillers++] = fd;
                for (int waited = 0; (now = count_fds(t->daemon)) == before; waited += 10) {
                        if (waited >= INTEG_WAIT_MS)
                                fail_msg("vsockmuxd never accepted a control connection (%u fds)", before);
                        integ_sleep_ms(10);
                }
        }

        /* A new exec fails, and says why. */
        snprintf(path, sizeof(path), "%s", integ_path(t, "refused.out"));
        snprintf(err_path, sizeof(err_path), "%s", integ_path(t, "refused.err"));
        exec_try(t, path, err_path, "echo never", &res);
        integ_assert_code(t, &res, 125);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "Too many open files");
        integ_result_done(&res);

        /* The running stream carries on and ends whole. */
        integ_touch(integ_path(t, "go"));
        assert_int_equal(wait_code(t, long_pid), 0);
        assert_file_is_seq(long_out, FAULTS_LONG_LINES);

        /* The earlier execs end; a new one works again. */
        integ_touch(integ_path(t, "release"));
        for (unsigned i = 0; i < n_holders; i++)
                assert_int_equal(wait_code(t, holders[i]), 0);
        for (unsigned i = 0; i < n_fillers; i++)
                close(fillers[i]);
        snprintf(path, sizeof(path), "%s", integ_path(t, "after.out"));
        snprintf(script, sizeof(script), "seq 1 %u", FAULTS_SIDE_LINES);
        long_pid = exec_detached(t, path, NULL, script);
        assert_int_equal(wait_code(t, long_pid), 0);
        assert_file_is_seq(path, FAULTS_SIDE_LINES);
}

/* The soft "Max open files" of /proc/PID/limits. */
static unsigned soft_nofile(pid_t pid)
{
        char path[64], *limits, *line;
        unsigned soft = 0;

        snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
        limits = integ_read_file(path, NULL);
        assert_non_null(limits);
        line = strstr(limits, "Max open files");
        assert_non_null(line);
        assert_int_equal(sscanf(line, "Max open files %u", &soft), 1);
        free(limits);
        return soft;
}

/* The stream capacity the last daemon to start logged ("stream capacity N;"). */
static unsigned logged_stream_capacity(struct integ *t)
{
        char *log = integ_read_file(t->daemon_log, NULL), *at = NULL;
        unsigned cap = 0;

        assert_non_null(log);
        for (char *p = log; (p = strstr(p, "stream capacity ")); p++)
                at = p;
        assert_non_null(at);
        assert_int_equal(sscanf(at, "stream capacity %u", &cap), 1);
        free(log);
        return cap;
}

static void test_open_file_limit_is_raised_to_hard_and_its_stream_cap_says_so(void **state)
{
        struct integ *t = *state;
        char path[INTEG_PATH_MAX], script[512];
        long holders[FAULTS_CAP_STREAMS_MAX], pid;
        struct integ_result res;
        unsigned cap;

        if (getenv("VSOCKMUX_DAEMON_WRAPPER") && getenv("VSOCKMUX_DAEMON_WRAPPER")[0]) {
                fprintf(stderr, "SKIP: RLIMIT_NOFILE %u leaves no room for the daemon wrapper\n",
                        FAULTS_CAP_HARD_NOFILE);
                skip();
        }
        restart_daemon_nofile(t, FAULTS_CAP_SOFT_NOFILE, FAULTS_CAP_HARD_NOFILE);
        /* The soft limit was raised to the hard one at start, and the default cap follows from it. */
        assert_int_equal(soft_nofile(t->daemon), FAULTS_CAP_HARD_NOFILE);
        cap = logged_stream_capacity(t);
        if (cap == 0 || cap > FAULTS_CAP_STREAMS_MAX)
                fail_msg("stream capacity %u at RLIMIT_NOFILE %u, not 1-%u", cap, FAULTS_CAP_HARD_NOFILE,
                         FAULTS_CAP_STREAMS_MAX);
        integ_vm_with_sim(t, "demo");

        /* Processes with a stdout and no stderr, one stream each, up to the cap. */
        snprintf(script, sizeof(script), "echo up; while [ -d %s ] && [ ! -e %s/release ]; do sleep 0.05; done", t->dir,
                 t->dir);
        for (unsigned i = 0; i < cap; i++) {
                char name[32];

                snprintf(name, sizeof(name), "cap%u.out", i);
                snprintf(path, sizeof(path), "%s", integ_path(t, name));
                holders[i] = exec_detached(t, path, NULL, script);
                assert_true(integ_wait_file_contains(path, "up\n", INTEG_WAIT_MS));
        }

        /* One more: refused, naming the limit to raise rather than an option nobody passed. */
        snprintf(path, sizeof(path), "%s", integ_path(t, "refused.out"));
        exec_try(t, path, NULL, "echo never", &res);
        integ_assert_code(t, &res, 125);
        integ_assert_one_line_error(res.err);
        integ_assert_contains(res.err, "open-file limit");
        integ_assert_contains(res.err, "RLIMIT_NOFILE");
        integ_result_done(&res);
        assert_daemon_serves(t);

        /* Once they end, there is room again. */
        integ_touch(integ_path(t, "release"));
        for (unsigned i = 0; i < cap; i++)
                assert_int_equal(wait_code(t, holders[i]), 0);
        snprintf(path, sizeof(path), "%s", integ_path(t, "after.out"));
        pid = exec_detached(t, path, NULL, "echo after");
        assert_int_equal(wait_code(t, pid), 0);
        assert_true(integ_wait_file_contains(path, "after\n", INTEG_WAIT_MS));
}

static void test_sigterm_with_100_active_streams_flushes_and_exits_0(void **state)
{
        struct integ *t = *state;
        char outs[FAULTS_STOP_STREAMS][INTEG_PATH_MAX], bridge[INTEG_PATH_MAX], attach_dir[INTEG_PATH_MAX];
        char fast[512], slow[512], gate[INTEG_PATH_MAX], prefix[INTEG_NAME_MAX], go[FAULTS_STOP_STREAMS];
        struct stat st;
        DIR *d;
        int code, gate_fd;

        integ_vm_with_sim(t, "demo");
        /* The processes wait on a fifo (no CPU while 100 of them wait), then count 1, 2, 3, ... for
         * as long as the test's dir exists: a few as fast as they can, the rest a line at a time. */
        snprintf(gate, sizeof(gate), "%s", integ_path(t, "gate"));
        assert_int_equal(mkfifo(gate, 0644), 0);
        gate_fd = open(gate, O_RDWR | O_CLOEXEC);
        assert_true(gate_fd >= 0);
        snprintf(fast, sizeof(fast), "read x < %s; i=0; while [ -d %s ]; do seq $((i+1)) $((i+%u)); i=$((i+%u)); done",
                 gate, t->dir, FAULTS_STOP_BLOCK, FAULTS_STOP_BLOCK);
        snprintf(slow, sizeof(slow), "read x < %s; i=0; while [ -d %s ]; do i=$((i+1)); echo $i; sleep 0.2; done", gate,
                 t->dir);
        for (unsigned i = 0; i < FAULTS_STOP_STREAMS; i++) {
                char name[32];

                snprintf(name, sizeof(name), "count%u.out", i);
                snprintf(outs[i], sizeof(outs[i]), "%s", integ_path(t, name));
                exec_detached(t, outs[i], NULL, i % FAULTS_STOP_FAST_EVERY == 0 ? fast : slow);
        }
        /* One line per process: each `read` takes exactly one. */
        memset(go, '\n', sizeof(go));
        assert_int_equal(write(gate_fd, go, sizeof(go)), (ssize_t)sizeof(go));
        /* Every stream has delivered something: all 100 are flowing. */
        for (unsigned i = 0; i < FAULTS_STOP_STREAMS; i++)
                if (!file_starts_with(outs[i], "1\n", INTEG_WAIT_MS)) {
                        integ_dump_daemon_log(t);
                        fail_msg("stream %u never delivered", i);
                }

        snprintf(bridge, sizeof(bridge), "%s_1073741824", integ_hvsock(t, "demo"));
        assert_int_equal(stat(bridge, &st), 0);
        assert_int_equal(kill(t->daemon, SIGTERM), 0);
        assert_int_equal(integ_reap(t, t->daemon, INTEG_WAIT_MS, &code), 0);
        t->daemon = 0;
        if (code != 0) {
                integ_dump_daemon_log(t);
                fail_msg("vsockmuxd exited %d on SIGTERM with %u streams", code, FAULTS_STOP_STREAMS);
        }

        close(gate_fd);
        /* Its sockets are gone: control, bridge, every stdio port, every attach socket. */
        assert_int_equal(stat(t->sock, &st), -1);
        assert_int_equal(stat(bridge, &st), -1);
        snprintf(prefix, sizeof(prefix), "demo.vsock_");
        d = opendir(t->dir);
        assert_non_null(d);
        for (struct dirent *e; (e = readdir(d));)
                if (!strncmp(e->d_name, prefix, strlen(prefix)))
                        fail_msg("%s/%s is left behind", t->dir, e->d_name);
        closedir(d);
        snprintf(attach_dir, sizeof(attach_dir), "%s/attach", t->state_dir);
        d = opendir(attach_dir);
        if (d) {
                for (struct dirent *e; (e = readdir(d));)
                        if (e->d_name[0] != '.')
                                fail_msg("%s/%s is left behind", attach_dir, e->d_name);
                closedir(d);
        }
        /* What it read is at the endpoints, in order, with no gap. */
        for (unsigned i = 0; i < FAULTS_STOP_STREAMS; i++) {
                size_t len;
                char *got = integ_read_file(outs[i], &len);

                assert_non_null(got);
                if (!is_seq_prefix(got, len))
                        fail_msg("%s is not 1, 2, 3, ... (%zu bytes)", outs[i], len);
                free(got);
        }
        if (log_has_line(t, "could not flush", NULL)) {
                integ_dump_daemon_log(t);
                fail_msg("vsockmuxd stopped without flushing every stream");
        }
}

/* The tmpfs of the full-disk test goes before the harness removes the dir. */
static int faults_teardown(void **state)
{
        struct integ *t = *state;
        char full[INTEG_PATH_MAX];

        snprintf(full, sizeof(full), "%s/full", t->dir);
        (void)umount2(full, MNT_DETACH);
        return integ_teardown(state);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stalled_endpoint_backpressures_its_process_only_and_loses_nothing),
                cmocka_unit_test(test_vanished_endpoint_fails_only_its_stream),
                cmocka_unit_test(test_full_disk_fails_only_that_file_stream),
                cmocka_unit_test(test_fd_exhaustion_fails_new_execs_clearly_and_keeps_streams_flowing),
                cmocka_unit_test(test_open_file_limit_is_raised_to_hard_and_its_stream_cap_says_so),
                cmocka_unit_test(test_sigterm_with_100_active_streams_flushes_and_exits_0),
        };
        /* integ_run's setup, with a teardown that also unmounts the tmpfs. */
        for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
                tests[i].teardown_func = faults_teardown;
        return integ_run("integration-faults-host", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
