/* Fault injection on the control socket: clients that vanish mid-request, announce huge frames, or hold 1,000 connections. */
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "harness.h"

#define FC_HELD 1000u                   /* connections one client opens and holds */
#define FC_NOFILE 4096u                 /* our fd limit: the held connections and some spare */
#define FC_RSS_GROWTH_MAX (64ull << 20) /* a memory bound, generous for ASan's shadow and quarantine */
#define FC_MAX_CONNECTIONS "2000"       /* a daemon configured to take every held connection */
#define FC_DEFAULT_MAX_CONNECTIONS 128u /* CONTROL_SERVER_MAX_CONNECTIONS */
#define FC_HEADER 10u                   /* ttrpc: BE32 length, BE32 stream id, type, flags */
#define FC_MAX_DATA (4u << 20)          /* ttrpc's (and the daemon's) cap on a frame's data */
#define FC_PARTIAL_CLIENTS 64u

static int64_t fc_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The daemon may close as soon as it has seen enough: EPIPE/ECONNRESET end the send quietly. */
static void fc_send(int fd, const void *data, size_t len)
{
        while (len > 0) {
                ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

                if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
                        return;
                if (n <= 0)
                        fail_msg("send: %s", strerror(errno));
                data = (const uint8_t *)data + n;
                len -= (size_t)n;
        }
}

static void fc_put_be32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

static uint32_t fc_get_be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static size_t fc_put_string(uint8_t *p, uint8_t tag, const char *s)
{
        size_t n = strlen(s);

        assert_true(n < 128);
        p[0] = tag;
        p[1] = (uint8_t)n;
        memcpy(p + 2, s, n);
        return n + 2;
}

/* A complete ttrpc request frame for vsockmux.v1.Control/<method>; returns its size. */
static size_t fc_build_call(uint8_t *buf, size_t cap, uint32_t stream_id, const char *method, const uint8_t *payload,
                            size_t payload_len)
{
        size_t n = FC_HEADER;

        assert_true(payload_len < 128);
        assert_true(cap >= FC_HEADER + 6 + strlen("vsockmux.v1.Control") + strlen(method) + payload_len);
        n += fc_put_string(buf + n, 0x0a, "vsockmux.v1.Control"); /* Request.service = 1 */
        n += fc_put_string(buf + n, 0x12, method);                /* Request.method = 2 */
        if (payload_len > 0) {
                buf[n++] = 0x1a; /* Request.payload = 3 */
                buf[n++] = (uint8_t)payload_len;
                memcpy(buf + n, payload, payload_len);
                n += payload_len;
        }
        fc_put_be32(buf, (uint32_t)(n - FC_HEADER));
        fc_put_be32(buf + 4, stream_id);
        buf[8] = 1; /* request */
        buf[9] = 0;
        return n;
}

static size_t fc_build_request(uint8_t *buf, size_t cap, uint32_t stream_id, const char *method)
{
        return fc_build_call(buf, cap, stream_id, method, NULL, 0);
}

/* WaitRequest{vm = 1, pid = 2} on stream 1. */
static size_t fc_build_wait(uint8_t *buf, size_t cap, const char *vm, uint32_t pid)
{
        uint8_t payload[64];
        size_t n = fc_put_string(payload, 0x0a, vm);

        payload[n++] = 0x10;
        do {
                payload[n++] = (uint8_t)((pid & 0x7f) | (pid > 0x7f ? 0x80 : 0));
                pid >>= 7;
        } while (pid);
        return fc_build_call(buf, cap, 1, "Wait", payload, n);
}

static void fc_recv_exact(int fd, uint8_t *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = recv(fd, buf, len, 0);

                if (n == 0)
                        fail_msg("the daemon closed a connection that made a valid call");
                if (n < 0)
                        fail_msg("no answer on a held connection: %s", strerror(errno));
                buf += n;
                len -= (size_t)n;
        }
}

/* Reads one response frame; returns its stream id and fails unless its status is OK. */
static uint32_t fc_recv_response(int fd)
{
        uint8_t hdr[FC_HEADER], *body;
        uint32_t len;

        fc_recv_exact(fd, hdr, sizeof(hdr));
        len = fc_get_be32(hdr);
        assert_int_equal(hdr[8], 2); /* response */
        assert_true(len <= FC_MAX_DATA);
        body = malloc(len + 1);
        assert_non_null(body);
        fc_recv_exact(fd, body, len);
        /* Response.status (field 1) is absent or carries code (field 1) 0. */
        if (len >= 4 && body[0] == 0x0a && body[1] >= 2 && body[2] == 0x08 && body[3] != 0)
                fail_msg("a call on a held connection failed with code %u", body[3]);
        free(body);
        return fc_get_be32(hdr + 4);
}

/* A Stats call by hand on an existing connection: answered on our stream, status OK. */
static void fc_assert_stats_answered(int fd, uint32_t stream_id)
{
        uint8_t req[128];

        fc_send(fd, req, fc_build_request(req, sizeof(req), stream_id, "Stats"));
        assert_int_equal(fc_recv_response(fd), stream_id);
}

/* A connection with a Wait in flight: the Stats answer behind it proves the daemon took the Wait. */
static int fc_busy_waiter(struct integ *t, const char *vm, long pid)
{
        uint8_t req[128];
        int fd = integ_connect_unix(t->sock, SOCK_STREAM);

        fc_send(fd, req, fc_build_wait(req, sizeof(req), vm, (uint32_t)pid));
        fc_assert_stats_answered(fd, 3);
        return fd;
}

static int64_t fc_control_connections(struct integ *t)
{
        struct json_object *s = integ_cli_json(t, "stats", "--json", NULL);
        int64_t n = integ_json_int(s, "control_connections");

        json_object_put(s);
        return n;
}

/* Polls stats until only the stats call itself is connected: every dropped client was released. */
static void fc_wait_connections(struct integ *t, int64_t want)
{
        int64_t deadline = fc_now_ms() + INTEG_WAIT_MS, n;

        while ((n = fc_control_connections(t)) != want) {
                if (fc_now_ms() >= deadline) {
                        integ_dump_daemon_log(t);
                        fail_msg("vsockmuxd still counts %lld control connections, expected %lld", (long long)n,
                                 (long long)want);
                }
                integ_sleep_ms(20);
        }
}

static void fc_assert_vm_ls_works(struct integ *t)
{
        struct integ_result res;

        integ_cli(t, &res, NULL, "vm", "ls", NULL);
        integ_assert_code(t, &res, 0);
        integ_result_done(&res);
}

static uint64_t fc_rss_bytes(pid_t pid)
{
        char path[64], line[256];
        unsigned long long kib = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "re");
        if (!f)
                fail_msg("cannot read %s: %s", path, strerror(errno));
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %llu kB", &kib) == 1)
                        break;
        fclose(f);
        assert_true(kib > 0);
        return kib * 1024;
}

static void fc_raise_nofile(void)
{
        struct rlimit rl;

        assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
        if (rl.rlim_cur >= FC_NOFILE)
                return;
        if (rl.rlim_max < FC_NOFILE) {
                fprintf(stderr, "SKIP: RLIMIT_NOFILE hard limit %llu is below %u\n", (unsigned long long)rl.rlim_max,
                        FC_NOFILE);
                skip();
        }
        rl.rlim_cur = FC_NOFILE;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

/* Replaces the harness's daemon with one started with extra options, on the same socket and log. */
static void fc_restart_daemon(struct integ *t, const char *opt, const char *value)
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
                (char *)opt,
                (char *)value,
                NULL,
        };
        int64_t deadline = fc_now_ms() + INTEG_WAIT_MS;
        int code;

        assert_int_equal(kill(t->daemon, SIGTERM), 0);
        assert_int_equal(integ_reap(t, t->daemon, INTEG_WAIT_MS, &code), 0);
        assert_int_equal(code, 0);
        t->daemon = integ_spawn(t, argv, NULL, NULL, t->daemon_log);
        for (;;) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                bool ok;

                assert_true(fd >= 0);
                memcpy(sa.sun_path, t->sock, strlen(t->sock) + 1);
                ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
                close(fd);
                if (ok)
                        break;
                if (!integ_alive(t, t->daemon) || fc_now_ms() >= deadline) {
                        integ_dump_daemon_log(t);
                        fail_msg("vsockmuxd %s %s did not start", opt, value);
                }
                integ_sleep_ms(10);
        }
}

/* The restarted daemon is ours to stop: it must still exit 0 on SIGTERM. */
static void fc_stop_daemon(struct integ *t)
{
        int code;

        assert_int_equal(kill(t->daemon, SIGTERM), 0);
        assert_int_equal(integ_reap(t, t->daemon, INTEG_WAIT_MS, &code), 0);
        t->daemon = 0;
        if (code != 0) {
                integ_dump_daemon_log(t);
                fail_msg("vsockmuxd exited %d on SIGTERM", code);
        }
}

static void test_clients_gone_mid_request_are_released_and_logged(void **state)
{
        struct integ *t = *state;
        uint8_t frame[128];
        size_t len = fc_build_request(frame, sizeof(frame), 1, "VmList");

        /* Every cut through a valid request: inside the header, right after it, inside the payload. */
        for (unsigned i = 0; i < FC_PARTIAL_CLIENTS; i++) {
                size_t cut = 1 + i % (len - 1);
                int fd = integ_connect_unix(t->sock, SOCK_STREAM);

                fc_send(fd, frame, cut);
                close(fd);
        }
        /* A header announcing the largest legal frame, then nothing: the daemon waits for the rest
         * without blocking anyone else, and forgets it when the client goes. */
        {
                uint8_t hdr[FC_HEADER] = { 0 };
                int fd = integ_connect_unix(t->sock, SOCK_STREAM);

                fc_put_be32(hdr, FC_MAX_DATA);
                fc_put_be32(hdr + 4, 1);
                hdr[8] = 1;
                fc_send(fd, hdr, sizeof(hdr));
                fc_send(fd, frame + FC_HEADER, len - FC_HEADER);
                fc_assert_vm_ls_works(t);
                close(fd);
        }
        fc_wait_connections(t, 1);
        if (!integ_wait_file_contains(t->daemon_log, "in the middle of a request", INTEG_WAIT_MS)) {
                integ_dump_daemon_log(t);
                fail_msg("vsockmuxd did not log a client that left mid-request");
        }
        fc_assert_vm_ls_works(t);
}

static void test_client_killed_during_its_call_is_forgotten(void **state)
{
        struct integ *t = *state;
        char pid_s[32], script[512];
        char *wait_args[] = { (char *)"wait", (char *)"demo", pid_s, NULL };
        struct integ_result res;
        pid_t gone, kept;
        long pid;
        int code;

        integ_vm_with_sim(t, "demo");
        snprintf(script, sizeof(script), "%s; exit 5", integ_wait_go(t));
        pid = integ_exec_detached(t, "demo", script);
        snprintf(pid_s, sizeof(pid_s), "%ld", pid);
        gone = integ_spawn(t, integ_cli_argv(t, wait_args), NULL, NULL, NULL);
        kept = integ_spawn(t, integ_cli_argv(t, wait_args), NULL, NULL, NULL);
        /* Both waits are in (plus the stats call that counts them). */
        while (fc_control_connections(t) < 3) {
                assert_true(integ_alive(t, gone));
                assert_true(integ_alive(t, kept));
                integ_sleep_ms(20);
        }
        integ_kill(t, gone, SIGKILL);
        fc_wait_connections(t, 2);

        /* The process's exit finds one waiter gone and one still there. */
        integ_touch(integ_path(t, "go"));
        assert_int_equal(integ_reap(t, kept, INTEG_WAIT_MS, &code), 0);
        if (code != 5) {
                integ_dump_daemon_log(t);
                fail_msg("the remaining wait exited %d, expected the process's 5", code);
        }
        integ_cli(t, &res, NULL, "wait", "demo", pid_s, NULL);
        integ_assert_code(t, &res, 5);
        integ_result_done(&res);
        fc_wait_connections(t, 1);
}

static void test_huge_lengths_are_refused_with_a_log_line(void **state)
{
        struct integ *t = *state;
        static const uint32_t lengths[] = { FC_MAX_DATA + 1, 0x7fffffffu, 0xffffffffu };

        for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
                uint8_t hdr[FC_HEADER] = { 0 };
                int fd = integ_connect_unix(t->sock, SOCK_STREAM);

                fc_put_be32(hdr, lengths[i]);
                fc_put_be32(hdr + 4, 1);
                hdr[8] = 1;
                fc_send(fd, hdr, sizeof(hdr));
                /* Refused on the header alone: nobody waits for 4 GiB to arrive. */
                integ_expect_closed(t, fd, "a connection it should have dropped");
                close(fd);
        }
        /* The wording names the limit; only this test's clients can have been closed here. */
        if (!integ_wait_file_contains(t->daemon_log, "closing connection from pid", INTEG_WAIT_MS)) {
                integ_dump_daemon_log(t);
                fail_msg("vsockmuxd did not log the oversized frame");
        }
        fc_wait_connections(t, 1);
        fc_assert_vm_ls_works(t);
}

/* Opens n connections and keeps them; they send nothing. */
static int *fc_hold(struct integ *t, unsigned n)
{
        int *fds = calloc(n, sizeof(int));

        assert_non_null(fds);
        for (unsigned i = 0; i < n; i++)
                fds[i] = integ_connect_unix(t->sock, SOCK_STREAM);
        return fds;
}

static void fc_release(int *fds, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        free(fds);
}

static void fc_assert_rss_bounded(struct integ *t, uint64_t before)
{
        uint64_t after = fc_rss_bytes(t->daemon);

        if (after > before + FC_RSS_GROWTH_MAX)
                fail_msg("vsockmuxd's RSS grew from %llu to %llu bytes (bound: %llu more)", (unsigned long long)before,
                         (unsigned long long)after, FC_RSS_GROWTH_MAX);
}

#define FC_TRICKLERS 48u

static void test_clients_trickling_huge_frames_keep_memory_bounded(void **state)
{
        struct integ *t = *state;
        const char *asan = getenv("ASAN_OPTIONS");
        char opts[512];
        uint8_t hdr[FC_HEADER] = { 0 }, *chunk;
        uint64_t rss;
        int *fds;

        fc_raise_nofile();
        /* Under ASan freed buffers stay resident in its quarantine: keep that small, so RSS shows
         * what the daemon holds. Nothing else reads the option. */
        snprintf(opts, sizeof(opts), "%s%squarantine_size_mb=8", asan ?: "", asan ? ":" : "");
        setenv("ASAN_OPTIONS", opts, 1);
        fc_restart_daemon(t, "--log-level", "debug");
        if (asan)
                setenv("ASAN_OPTIONS", asan, 1);
        else
                unsetenv("ASAN_OPTIONS");
        fc_assert_vm_ls_works(t);
        rss = fc_rss_bytes(t->daemon);

        /* Each client announces the largest legal frame and sends all of it but one byte. */
        chunk = calloc(1, FC_MAX_DATA);
        assert_non_null(chunk);
        fc_put_be32(hdr, FC_MAX_DATA);
        fc_put_be32(hdr + 4, 1);
        hdr[8] = 1;
        fds = calloc(FC_TRICKLERS, sizeof(int));
        assert_non_null(fds);
        for (unsigned i = 0; i < FC_TRICKLERS; i++) {
                fds[i] = integ_connect_unix(t->sock, SOCK_STREAM);
                fc_send(fds[i], hdr, sizeof(hdr));
                fc_send(fds[i], chunk, FC_MAX_DATA - 1);
        }
        free(chunk);
        /* A small request still gets through while they hold on. */
        fc_assert_vm_ls_works(t);
        fc_assert_rss_bounded(t, rss);
        if (!integ_wait_file_contains(t->daemon_log, "unfinished request and all connections together",
                                      INTEG_WAIT_MS)) {
                integ_dump_daemon_log(t);
                fail_msg("vsockmuxd did not log why it closed a client holding a huge unfinished request");
        }
        fc_release(fds, FC_TRICKLERS);
        fc_wait_connections(t, 1);
        fc_stop_daemon(t);
}

static void test_thousand_idle_connections_do_not_starve_a_client(void **state)
{
        struct integ *t = *state;
        uint64_t rss;
        int64_t n;
        int *fds;

        fc_raise_nofile();
        fc_assert_vm_ls_works(t);
        rss = fc_rss_bytes(t->daemon);
        /* Far more than the default cap of connections, all idle. */
        fds = fc_hold(t, FC_HELD);
        fc_assert_vm_ls_works(t);
        n = fc_control_connections(t);
        if (n > FC_DEFAULT_MAX_CONNECTIONS) {
                integ_dump_daemon_log(t);
                fail_msg("%lld control connections open, over the cap of %u", (long long)n, FC_DEFAULT_MAX_CONNECTIONS);
        }
        fc_assert_rss_bounded(t, rss);
        if (!integ_wait_file_contains(t->daemon_log, "idle longest", INTEG_WAIT_MS)) {
                integ_dump_daemon_log(t);
                fail_msg("vsockmuxd did not log why it closed idle connections");
        }
        fc_release(fds, FC_HELD);
        fc_wait_connections(t, 1);
}

static void test_busy_connections_at_the_cap_refuse_new_ones_cleanly(void **state)
{
        struct integ *t = *state;
        struct integ_result res;
        char script[512];
        int busy[4], idle;
        long pid;

        fc_restart_daemon(t, "--max-connections", "4");
        integ_vm_with_sim(t, "demo");
        snprintf(script, sizeof(script), "%s; exit 9", integ_wait_go(t));
        pid = integ_exec_detached(t, "demo", script);

        /* Three connections with a call in flight and one idle one fill the cap. */
        for (unsigned i = 0; i < 3; i++)
                busy[i] = fc_busy_waiter(t, "demo", pid);
        idle = integ_connect_unix(t->sock, SOCK_STREAM);
        /* The idle one makes way for a new client; no call in flight is cut. */
        fc_assert_vm_ls_works(t);
        integ_expect_closed(t, idle, "a connection it should have dropped");
        close(idle);
        for (unsigned i = 0; i < 3; i++)
                fc_assert_stats_answered(busy[i], 5);

        /* Every slot busy: a new client is refused, in one line, and the log says why. */
        busy[3] = fc_busy_waiter(t, "demo", pid);
        integ_cli(t, &res, NULL, "vm", "ls", NULL);
        integ_assert_code(t, &res, 1);
        integ_assert_one_line_error(res.err);
        integ_result_done(&res);
        if (!integ_wait_file_contains(t->daemon_log, "all with calls in flight", INTEG_WAIT_MS)) {
                integ_dump_daemon_log(t);
                fail_msg("vsockmuxd did not log why it refused a connection");
        }

        /* The waits were never disturbed: each gets the process's exit. */
        integ_touch(integ_path(t, "go"));
        for (unsigned i = 0; i < 4; i++) {
                assert_int_equal(fc_recv_response(busy[i]), 1);
                close(busy[i]);
        }
        fc_wait_connections(t, 1);
        fc_assert_vm_ls_works(t);
        fc_stop_daemon(t);
}

static void test_thousand_connections_under_a_raised_cap_are_all_served(void **state)
{
        struct integ *t = *state;
        uint64_t rss;
        int *fds;

        fc_raise_nofile();
        fc_restart_daemon(t, "--max-connections", FC_MAX_CONNECTIONS);
        fc_assert_vm_ls_works(t);
        rss = fc_rss_bytes(t->daemon);
        fds = fc_hold(t, FC_HELD);
        fc_wait_connections(t, FC_HELD + 1);
        fc_assert_vm_ls_works(t);
        /* Held connections are live connections: the first and the last still get answers. */
        fc_assert_stats_answered(fds[0], 1);
        fc_assert_stats_answered(fds[FC_HELD - 1], 1);
        fc_assert_stats_answered(fds[0], 3);
        fc_assert_rss_bounded(t, rss);
        fc_release(fds, FC_HELD);
        fc_wait_connections(t, 1);
        fc_stop_daemon(t);
}

int main(int argc, char **argv)
{
        struct CMUnitTest tests[] = {
                cmocka_unit_test(test_clients_gone_mid_request_are_released_and_logged),
                cmocka_unit_test(test_client_killed_during_its_call_is_forgotten),
                cmocka_unit_test(test_huge_lengths_are_refused_with_a_log_line),
                cmocka_unit_test(test_clients_trickling_huge_frames_keep_memory_bounded),
                cmocka_unit_test(test_thousand_idle_connections_do_not_starve_a_client),
                cmocka_unit_test(test_busy_connections_at_the_cap_refuse_new_ones_cleanly),
                cmocka_unit_test(test_thousand_connections_under_a_raised_cap_are_all_served),
        };

        return integ_run("integration-faults-control", tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
