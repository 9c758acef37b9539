/* bench/load.c: bench-load, the guest load generator (forked child) and the host endpoint reader
 * (parent) for one measurement. The driver starts the relay under test between our "ready" line
 * and the pid line it writes back; we print one JSON line of results. */
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "bench/pattern.h"
#include "bench/procstat.h"
#include "bench/spec.h"

#define LOAD_READ_BUF BENCH_PATTERN_SLICE_MAX
#define LOAD_MSG_MAX 4096u /* echo message and line size bound */
#define LOAD_ROUNDTRIPS_MAX 10000000u
#define LOAD_SECONDS_MAX 600.0
#define LOAD_WAIT_MS 30000 /* a stuck relay fails the run instead of hanging it */
#define LOAD_DIAL_MS 20000
#define LOAD_EVENTS 256
#define LOAD_PIDS_MAX 20000u

enum load_mode { LOAD_THROUGHPUT, LOAD_ECHO, LOAD_STALL, LOAD_IDLE, LOAD_SCALE };

struct load {
        struct bench_spec *spec;
        struct bench_pattern pat;
        enum load_mode mode;
        bool direct;
        uint64_t bytes;      /* per stream, measured */
        uint64_t warmup;     /* per stream, carried before the clock starts */
        size_t wsize;        /* guest write size (64 KiB chunks or 100-byte lines) */
        unsigned burst;      /* writes per stream per wakeup, for fairness */
        unsigned roundtrips; /* echo: per pair */
        double seconds;      /* stall: measuring window */
        unsigned active;     /* scale: streams [0, active) carry the measured bytes, the rest only the warm-up */
        pid_t *pids;
        unsigned npids;
        int *fd; /* per stream: the side this process owns */
        uint64_t *pos;
        int p2c[2], c2p[2];
        const char *error;
        char errbuf[256];
};

struct load_guest_report {
        int error;
        uint64_t written_first; /* bytes the guest got into stream 0 (the stalled one) */
        uint64_t written_total;
};

struct load_result {
        double seconds;
        uint64_t bytes, messages;
        struct bench_proc_sample before, idle, start, end;
        uint64_t kernel_kb_before, kernel_kb_idle, kernel_kb_end;
        unsigned fds_before, fds_idle; /* the first pid's open files */
        double p50_us, p99_us, max_us;
        struct bench_proc_sample load_start, load_end; /* bench-load itself and its guest child */
        uint64_t others_bytes;
        struct load_guest_report guest;
};

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fail(struct load *l, const char *fmt, ...) _printf_(2, 3);
static int fail(struct load *l, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(l->errbuf, sizeof(l->errbuf), fmt, ap);
        va_end(ap);
        l->error = l->errbuf;
        return -EIO;
}

static int full_write(int fd, const void *p, size_t n)
{
        const char *c = p;

        while (n > 0) {
                ssize_t w = write(fd, c, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0 && errno == EAGAIN) {
                        struct pollfd pfd = { .fd = fd, .events = POLLOUT };

                        if (poll(&pfd, 1, LOAD_WAIT_MS) <= 0)
                                return -ETIMEDOUT;
                        continue;
                }
                if (w <= 0)
                        return w < 0 ? negative_errno() : -EIO;
                c += w;
                n -= (size_t)w;
        }
        return 0;
}

static int full_read(int fd, void *p, size_t n)
{
        char *c = p;

        while (n > 0) {
                ssize_t r = read(fd, c, n);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return r < 0 ? negative_errno() : -EPIPE;
                c += r;
                n -= (size_t)r;
        }
        return 0;
}

/* The streams that carry the measured bytes: [0, this). */
static unsigned load_measured(const struct load *l)
{
        return l->mode == LOAD_SCALE ? l->active : l->spec->n;
}

/* ---- guest (child) ------------------------------------------------------------------- */

/* The daemon-path variant reaches a port through a symlink its driver made from the spec's guest
 * path; every relay unlinks its own listener's path once the guest is in, so the link goes too:
 * otherwise its inode and dentry (about 1 KiB, B7) are billed to that row alone. */
static void guest_unlink_link(const struct load *l, const struct bench_stream_spec *s)
{
        struct stat st;

        if (!l->direct && lstat(s->guest_path, &st) == 0 && S_ISLNK(st.st_mode))
                (void)unlink(s->guest_path);
}

static int guest_dial(struct load *l, unsigned i)
{
        const struct bench_stream_spec *s = &l->spec->s[i];
        double deadline = now_s() + LOAD_DIAL_MS / 1000.0;

        if (l->direct && s->kind == BENCH_ENDPOINT_FIFO) {
                int fd = open(s->endpoint_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);

                return fd < 0 ? negative_errno() : fd;
        }
        for (;;) {
                int fd = bench_unix_connect(l->direct ? s->endpoint_path : s->guest_path);

                if (fd >= 0)
                        guest_unlink_link(l, s);
                /* The relay may still be creating its listeners: keep dialing, as a guest agent would. */
                if (fd >= 0 || (fd != -ENOENT && fd != -ECONNREFUSED && fd != -EAGAIN) || now_s() > deadline)
                        return fd;
                usleep(1000);
        }
}

/* Writes streams [0, n) up to `upto` bytes; the last phase (upto = warmup + bytes) then closes them. */
static int guest_write_all(struct load *l, uint64_t *written, uint64_t upto, unsigned n)
{
        struct epoll_event ev[LOAD_EVENTS];
        unsigned left = n;
        _cleanup_close_ int ep = -1;
        bool last = upto == l->warmup + l->bytes, timed = l->mode == LOAD_STALL && last;

        if (!last && upto == 0)
                return 0;
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0)
                return negative_errno();
        for (unsigned i = 0; i < n; i++) {
                struct epoll_event e = { .events = EPOLLOUT, .data.u32 = i };

                if (epoll_ctl(ep, EPOLL_CTL_ADD, l->fd[i], &e) < 0)
                        return negative_errno();
        }
        if (timed) {
                struct epoll_event e = { .events = EPOLLIN, .data.u32 = UINT32_MAX };

                if (epoll_ctl(ep, EPOLL_CTL_ADD, l->p2c[0], &e) < 0)
                        return negative_errno();
        }
        while (left > 0) {
                int k = epoll_wait(ep, ev, LOAD_EVENTS, timed ? -1 : LOAD_WAIT_MS);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        return -ETIMEDOUT;
                for (int j = 0; j < k; j++) {
                        unsigned i = ev[j].data.u32;

                        if (i == UINT32_MAX)
                                return 0; /* the host closed the window */
                        for (unsigned b = 0; b < l->burst; b++) {
                                size_t len = l->wsize;
                                ssize_t w;

                                if (!timed && upto - written[i] < len)
                                        len = (size_t)(upto - written[i]);
                                w = write(l->fd[i], bench_pattern_at(&l->pat, i, written[i]), len);
                                if (w < 0 && errno == EAGAIN)
                                        break;
                                if (w < 0)
                                        return negative_errno();
                                written[i] += (uint64_t)w;
                                if (!timed && written[i] == upto) {
                                        (void)epoll_ctl(ep, EPOLL_CTL_DEL, l->fd[i], NULL);
                                        if (last && l->mode != LOAD_IDLE)
                                                l->fd[i] = safe_close(l->fd[i]);
                                        left--;
                                        break;
                                }
                        }
                }
        }
        return 0;
}

static int guest_echo(struct load *l)
{
        struct epoll_event ev[LOAD_EVENTS];
        unsigned pairs = l->spec->n / 2, left = pairs;
        _cleanup_close_ int ep = -1;
        char buf[LOAD_MSG_MAX];

        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0)
                return negative_errno();
        for (unsigned k = 0; k < pairs; k++) {
                struct epoll_event e = { .events = EPOLLIN, .data.u32 = k };

                if (epoll_ctl(ep, EPOLL_CTL_ADD, l->fd[2 * k], &e) < 0)
                        return negative_errno();
        }
        while (left > 0) {
                int n = epoll_wait(ep, ev, LOAD_EVENTS, LOAD_WAIT_MS * 4);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? negative_errno() : -ETIMEDOUT;
                for (int j = 0; j < n; j++) {
                        unsigned k = ev[j].data.u32;
                        ssize_t r = read(l->fd[2 * k], buf, sizeof(buf));
                        int q;

                        if (r < 0 && errno == EAGAIN)
                                continue;
                        if (r < 0)
                                return negative_errno();
                        if (r == 0) {
                                (void)epoll_ctl(ep, EPOLL_CTL_DEL, l->fd[2 * k], NULL);
                                l->fd[2 * k + 1] = safe_close(l->fd[2 * k + 1]);
                                left--;
                                continue;
                        }
                        q = full_write(l->fd[2 * k + 1], buf, (size_t)r);
                        if (q < 0)
                                return q;
                }
        }
        return 0;
}

static _Noreturn void guest_main(struct load *l)
{
        struct load_guest_report rep = {};
        _cleanup_free_ uint64_t *written = NULL;
        char c;
        int r = 0;

        l->p2c[1] = safe_close(l->p2c[1]);
        l->c2p[0] = safe_close(l->c2p[0]);
        /* The host's fds are the parent's: the guest holds only its own. */
        for (unsigned i = 0; i < l->spec->n; i++)
                l->fd[i] = safe_close(l->fd[i]);
        written = calloc(l->spec->n, sizeof(*written));
        if (!written)
                r = -ENOMEM;
        for (unsigned i = 0; r >= 0 && i < l->spec->n; i++) {
                r = guest_dial(l, i);
                if (r >= 0) {
                        l->fd[i] = r;
                        r = 0;
                }
        }
        c = r < 0 ? 'e' : 'c';
        if (write(l->c2p[1], &c, 1) != 1 || r < 0)
                goto report;
        /* 'w': the untimed warm-up (first-touch page faults, pool buffers), then 'g': measure. */
        if (full_read(l->p2c[0], &c, 1) < 0)
                _exit(2);
        if (l->mode != LOAD_ECHO)
                r = guest_write_all(l, written, l->warmup, l->spec->n);
        if (r < 0)
                goto report;
        if (full_read(l->p2c[0], &c, 1) < 0)
                _exit(2);
        if (l->mode == LOAD_ECHO)
                r = guest_echo(l);
        else
                r = guest_write_all(l, written, l->warmup + l->bytes, load_measured(l));
report:
        rep.error = r;
        if (written) {
                rep.written_first = written[0];
                for (unsigned i = 0; i < l->spec->n; i++)
                        rep.written_total += written[i];
        }
        if (full_write(l->c2p[1], &rep, sizeof(rep)) < 0)
                _exit(2);
        /* Hold every connection open until the host has finished looking (idle memory). */
        while (read(l->p2c[0], &c, 1) > 0)
                ;
        _exit(0);
}

/* ---- host (parent) ------------------------------------------------------------------- */

static int host_open_endpoints(struct load *l)
{
        for (unsigned i = 0; i < l->spec->n; i++) {
                const struct bench_stream_spec *s = &l->spec->s[i];
                int fd;

                if (s->kind == BENCH_ENDPOINT_UNIX) {
                        fd = bench_unix_listen(s->endpoint_path, 4);
                } else {
                        (void)unlink(s->endpoint_path);
                        if (mkfifo(s->endpoint_path, 0600) < 0)
                                return fail(l, "mkfifo %s: %m", s->endpoint_path);
                        /* O_RDWR: a reader that never sees a premature EOF before the writer opens. */
                        fd = open(s->endpoint_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
                        if (fd < 0)
                                fd = negative_errno();
                }
                if (fd < 0)
                        return fail(l, "endpoint %s: %s", s->endpoint_path, strerror(-fd));
                l->fd[i] = fd;
        }
        return 0;
}

static int host_accept_all(struct load *l)
{
        struct epoll_event ev[LOAD_EVENTS];
        _cleanup_close_ int ep = -1;
        unsigned left = 0;

        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0)
                return fail(l, "epoll: %m");
        for (unsigned i = 0; i < l->spec->n; i++) {
                struct epoll_event e = { .events = EPOLLIN, .data.u32 = i };

                if (l->spec->s[i].kind != BENCH_ENDPOINT_UNIX)
                        continue;
                if (epoll_ctl(ep, EPOLL_CTL_ADD, l->fd[i], &e) < 0)
                        return fail(l, "epoll_ctl: %m");
                left++;
        }
        while (left > 0) {
                int n = epoll_wait(ep, ev, LOAD_EVENTS, LOAD_WAIT_MS);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return fail(l, "relay never connected %u endpoints", left);
                for (int j = 0; j < n; j++) {
                        unsigned i = ev[j].data.u32;
                        int fd = accept4(l->fd[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                        if (fd < 0 && errno == EAGAIN)
                                continue;
                        if (fd < 0)
                                return fail(l, "accept: %m");
                        safe_close(l->fd[i]);
                        (void)unlink(l->spec->s[i].endpoint_path);
                        l->fd[i] = fd;
                        left--;
                }
        }
        return 0;
}

/* Reads from_guest endpoints [0, nread) up to `upto` bytes (or until the window ends, stall mode). */
static int host_read_all(struct load *l, struct load_result *res, double t0, uint64_t upto, unsigned nread)
{
        struct epoll_event ev[LOAD_EVENTS];
        _cleanup_free_ uint8_t *buf = NULL;
        _cleanup_close_ int ep = -1;
        bool timed = l->mode == LOAD_STALL && upto == l->warmup + l->bytes;
        unsigned left = 0;

        buf = malloc(LOAD_READ_BUF);
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (!buf || ep < 0)
                return fail(l, "setup: %m");
        for (unsigned i = 0; i < nread; i++) {
                struct epoll_event e = { .events = EPOLLIN, .data.u32 = i };

                if (timed && i == 0)
                        continue; /* the stalled consumer */
                if (epoll_ctl(ep, EPOLL_CTL_ADD, l->fd[i], &e) < 0)
                        return fail(l, "epoll_ctl: %m");
                left++;
        }
        while (left > 0) {
                int timeout = LOAD_WAIT_MS, n;

                if (timed) {
                        double rest = t0 + l->seconds - now_s();

                        if (rest <= 0)
                                break;
                        timeout = (int)(rest * 1000) + 1;
                }
                n = epoll_wait(ep, ev, LOAD_EVENTS, timeout);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return fail(l, "epoll_wait: %m");
                if (n == 0 && !timed)
                        return fail(l, "stalled: %u streams short of their bytes", left);
                for (int j = 0; j < n; j++) {
                        unsigned i = ev[j].data.u32;

                        for (int b = 0; b < 4; b++) {
                                ssize_t r = read(l->fd[i], buf, LOAD_READ_BUF);
                                uint64_t bad;

                                if (r < 0 && errno == EAGAIN)
                                        break;
                                if (r < 0)
                                        return fail(l, "stream %u: read: %m", i);
                                if (r == 0)
                                        return fail(l, "stream %u: EOF after %llu of %llu bytes", i,
                                                    (unsigned long long)l->pos[i], (unsigned long long)upto);
                                if (!timed && l->pos[i] + (uint64_t)r > upto)
                                        return fail(l, "stream %u: %llu bytes more than sent", i,
                                                    (unsigned long long)(l->pos[i] + (uint64_t)r - upto));
                                if (bench_pattern_check(&l->pat, i, l->pos[i], buf, (size_t)r, &bad) < 0)
                                        return fail(l, "stream %u: corrupt or reordered byte at offset %llu", i,
                                                    (unsigned long long)bad);
                                l->pos[i] += (uint64_t)r;
                                res->bytes += (uint64_t)r;
                                if (i != 0)
                                        res->others_bytes += (uint64_t)r;
                                if (!timed && l->pos[i] == upto) {
                                        (void)epoll_ctl(ep, EPOLL_CTL_DEL, l->fd[i], NULL);
                                        left--;
                                        break;
                                }
                        }
                }
        }
        return 0;
}

/* After its last byte every socket stream below n must end with a clean EOF and nothing extra. */
static int host_check_eof(struct load *l, unsigned first, unsigned step, unsigned n)
{
        for (unsigned i = first; i < n; i += step) {
                struct pollfd pfd = { .fd = l->fd[i], .events = POLLIN };
                char c;
                ssize_t r;

                if (l->spec->s[i].kind != BENCH_ENDPOINT_UNIX)
                        continue;
                if (poll(&pfd, 1, LOAD_WAIT_MS) <= 0)
                        return fail(l, "stream %u: no EOF after the last byte", i);
                r = read(l->fd[i], &c, 1);
                if (r != 0)
                        return fail(l, "stream %u: %s after the last byte", i, r > 0 ? "extra data" : "read error");
        }
        return 0;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

static int host_echo(struct load *l, struct load_result *res)
{
        unsigned pairs = l->spec->n / 2, left = pairs;
        struct epoll_event ev[LOAD_EVENTS];
        _cleanup_free_ double *sent_at = NULL, *lat = NULL;
        _cleanup_free_ unsigned *count = NULL, *got = NULL;
        _cleanup_close_ int ep = -1;
        size_t nlat = 0, msg = l->wsize;
        uint8_t buf[LOAD_MSG_MAX];

        sent_at = calloc(pairs, sizeof(double));
        lat = calloc((size_t)pairs * l->roundtrips, sizeof(double));
        count = calloc(pairs, sizeof(unsigned));
        got = calloc(pairs, sizeof(unsigned));
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (!sent_at || !lat || !count || !got || ep < 0)
                return fail(l, "setup: %m");
        for (unsigned k = 0; k < pairs; k++) {
                struct epoll_event e = { .events = EPOLLIN, .data.u32 = k };

                if (epoll_ctl(ep, EPOLL_CTL_ADD, l->fd[2 * k + 1], &e) < 0)
                        return fail(l, "epoll_ctl: %m");
        }
        for (unsigned k = 0; k < pairs; k++) {
                sent_at[k] = now_s();
                if (full_write(l->fd[2 * k], bench_pattern_at(&l->pat, 2 * k, 0), msg) < 0)
                        return fail(l, "pair %u: write: %m", k);
        }
        while (left > 0) {
                int n = epoll_wait(ep, ev, LOAD_EVENTS, LOAD_WAIT_MS);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return fail(l, "echo stalled with %u pairs unfinished", left);
                for (int j = 0; j < n; j++) {
                        unsigned k = ev[j].data.u32;
                        uint64_t pos = (uint64_t)count[k] * msg + got[k], bad;
                        ssize_t r = read(l->fd[2 * k + 1], buf, msg - got[k]);

                        if (r < 0 && errno == EAGAIN)
                                continue;
                        if (r <= 0)
                                return fail(l, "pair %u: %s", k, r == 0 ? "EOF mid-echo" : strerror(errno));
                        if (bench_pattern_check(&l->pat, 2 * k, pos, buf, (size_t)r, &bad) < 0)
                                return fail(l, "pair %u: corrupt or reordered echo at offset %llu", k,
                                            (unsigned long long)bad);
                        got[k] += (unsigned)r;
                        if (got[k] < msg)
                                continue;
                        lat[nlat++] = now_s() - sent_at[k];
                        got[k] = 0;
                        if (++count[k] == l->roundtrips) {
                                left--;
                                continue;
                        }
                        sent_at[k] = now_s();
                        if (full_write(l->fd[2 * k], bench_pattern_at(&l->pat, 2 * k, (uint64_t)count[k] * msg), msg) <
                            0)
                                return fail(l, "pair %u: write: %m", k);
                }
        }
        res->messages = nlat;
        res->bytes = nlat * msg;
        qsort(lat, nlat, sizeof(double), cmp_double);
        res->p50_us = lat[nlat / 2] * 1e6;
        res->p99_us = lat[(size_t)floor((double)(nlat - 1) * 0.99)] * 1e6;
        res->max_us = lat[nlat - 1] * 1e6;
        return 0;
}

static int host_read_pids(struct load *l)
{
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        char *p, *end;

        if (getline(&line, &cap, stdin) < 0)
                return fail(l, "no pid line on stdin");
        l->pids = calloc(LOAD_PIDS_MAX, sizeof(pid_t));
        if (!l->pids)
                return fail(l, "oom");
        for (p = line;; p = end) {
                long v = strtol(p, &end, 10);

                if (end == p)
                        break;
                if (v <= 0 || l->npids == LOAD_PIDS_MAX)
                        return fail(l, "bad pid list");
                l->pids[l->npids++] = (pid_t)v;
        }
        return 0;
}

static void print_result(const struct load *l, const struct load_result *res, const char *mode)
{
        printf("{\"ok\":%s,\"mode\":\"%s\",\"streams\":%u,\"seconds\":%.6f,\"bytes\":%llu,\"messages\":%llu,"
               "\"relay_cpu_s\":%.6f,\"relay_pids\":%u,\"rss_kb_before\":%llu,\"rss_kb_end\":%llu,"
               "\"kernel_kb_before\":%llu,\"kernel_kb_end\":%llu,\"tasks\":%u,\"iou_wrk\":%u,\"iou_sqp\":%u,"
               "\"p50_us\":%.2f,\"p99_us\":%.2f,\"max_us\":%.2f,\"others_bytes\":%llu,"
               "\"stalled_absorbed\":%llu,\"guest_written\":%llu,\"active\":%u,\"rss_kb_idle\":%llu,"
               "\"kernel_kb_idle\":%llu,\"fds_before\":%u,\"fds_idle\":%u,\"load_cpu_s\":%.6f,\"error\":",
               l->error ? "false" : "true", mode, l->spec->n, res->seconds, (unsigned long long)res->bytes,
               (unsigned long long)res->messages,
               /* A relay that exited and was reaped reads as zero: never report negative CPU. */
               res->end.cpu_ns >= res->start.cpu_ns ? bench_ns_to_seconds(res->end.cpu_ns - res->start.cpu_ns) : -1.0,
               l->npids, (unsigned long long)res->before.rss_kb, (unsigned long long)res->end.rss_kb,
               (unsigned long long)res->kernel_kb_before, (unsigned long long)res->kernel_kb_end, res->end.tasks,
               res->end.iou_wrk, res->end.iou_sqp, res->p50_us, res->p99_us, res->max_us,
               (unsigned long long)res->others_bytes,
               (unsigned long long)(res->guest.written_first > l->warmup ? res->guest.written_first - l->warmup : 0),
               (unsigned long long)res->guest.written_total, load_measured(l), (unsigned long long)res->idle.rss_kb,
               (unsigned long long)res->kernel_kb_idle, res->fds_before, res->fds_idle,
               res->load_end.cpu_ns >= res->load_start.cpu_ns
                       ? bench_ns_to_seconds(res->load_end.cpu_ns - res->load_start.cpu_ns)
                       : -1.0);
        if (!l->error) {
                printf("null}\n");
                return;
        }
        putchar('"');
        for (const char *c = l->error; *c; c++)
                if (*c == '"' || *c == '\\')
                        printf("\\%c", *c);
                else if ((unsigned char)*c >= 0x20)
                        putchar(*c);
        printf("\"}\n");
}

/* Scale: every stream is up and has carried its warm-up, none carries anything now. */
static void host_sample_idle(struct load *l, struct load_result *res)
{
        usleep(500 * 1000); /* let deferred frees and RCU settle before looking, as idle mode does */
        bench_proc_sample(l->pids, l->npids, &res->idle);
        res->kernel_kb_idle = bench_kernel_kb();
        res->fds_idle = l->npids ? bench_proc_fds(l->pids[0]) : 0;
}

static int host_run(struct load *l, struct load_result *res)
{
        pid_t self = getpid(); /* and the guest, our child: the load generator's own CPU */
        char c;
        double t0;
        int r;

        if (full_read(l->c2p[0], &c, 1) < 0 || c != 'c')
                return fail(l, "the guest could not dial every stream");
        r = host_accept_all(l);
        if (r < 0)
                return r;
        if (write(l->p2c[1], "w", 1) != 1)
                return fail(l, "guest gone");
        if (l->warmup > 0) {
                struct load_result warm = {};

                r = host_read_all(l, &warm, now_s(), l->warmup, l->spec->n);
                if (r < 0)
                        return r;
        }
        if (l->mode == LOAD_SCALE)
                host_sample_idle(l, res);
        bench_proc_sample(l->pids, l->npids, &res->start);
        bench_proc_sample(&self, 1, &res->load_start);
        t0 = now_s();
        if (write(l->p2c[1], "g", 1) != 1)
                return fail(l, "guest gone");
        if (l->mode == LOAD_ECHO) {
                r = host_echo(l, res);
                res->seconds = now_s() - t0;
                bench_proc_sample(l->pids, l->npids, &res->end);
                bench_proc_sample(&self, 1, &res->load_end);
                if (r < 0)
                        return r;
                for (unsigned k = 0; k < l->spec->n / 2; k++)
                        l->fd[2 * k] = safe_close(l->fd[2 * k]); /* stdin EOF ends the guest's echo */
                r = host_check_eof(l, 1, 2, l->spec->n);
        } else {
                r = host_read_all(l, res, t0, l->warmup + l->bytes, load_measured(l));
                res->seconds = now_s() - t0;
                if (l->mode == LOAD_IDLE && r >= 0)
                        usleep(500 * 1000); /* let deferred frees and RCU settle before looking */
                bench_proc_sample(l->pids, l->npids, &res->end);
                bench_proc_sample(&self, 1, &res->load_end);
                res->kernel_kb_end = bench_kernel_kb();
                res->messages = res->bytes / l->wsize;
                if (r < 0)
                        return r;
                if (l->mode == LOAD_THROUGHPUT || l->mode == LOAD_SCALE)
                        r = host_check_eof(l, 0, 1, load_measured(l));
        }
        if (r < 0)
                return r;
        if (l->mode == LOAD_STALL && write(l->p2c[1], "s", 1) != 1)
                return fail(l, "guest gone");
        if (full_read(l->c2p[0], &res->guest, sizeof(res->guest)) < 0)
                return fail(l, "no report from the guest");
        if (res->guest.error < 0)
                return fail(l, "guest: %s", strerror(-res->guest.error));
        return 0;
}

static void load_done(struct load *l)
{
        free(l->fd);
        free(l->pos);
        free(l->pids);
        bench_pattern_done(&l->pat);
        l->spec = bench_spec_free(l->spec);
        safe_close(l->p2c[0]);
        safe_close(l->p2c[1]);
        safe_close(l->c2p[0]);
        safe_close(l->c2p[1]);
}

static int parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
        char *end;
        unsigned long long v;

        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno || end == s || *end || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static void usage(void)
{
        fprintf(stderr, "usage: bench-load --spec FILE --mode throughput|echo|stall|idle|scale [--direct]\n"
                        "                  [--bytes N] [--warmup N] [--write-size N] [--burst N] [--roundtrips N] "
                        "[--seconds S] [--active N]\n");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "spec", required_argument, NULL, 's' },
                { "mode", required_argument, NULL, 'm' },
                { "direct", no_argument, NULL, 'd' },
                { "bytes", required_argument, NULL, 'b' },
                { "write-size", required_argument, NULL, 'w' },
                { "burst", required_argument, NULL, 'u' },
                { "roundtrips", required_argument, NULL, 'r' },
                { "seconds", required_argument, NULL, 't' },
                { "warmup", required_argument, NULL, 'W' },
                { "active", required_argument, NULL, 'a' },
                {},
        };
        struct load l = { .wsize = 65536,
                          .burst = 4,
                          .roundtrips = 1000,
                          .seconds = 2,
                          .bytes = 1 << 20,
                          .p2c = { -1, -1 },
                          .c2p = { -1, -1 } };
        struct load_result res = {};
        const char *spec_path = NULL, *mode = "throughput";
        struct rlimit rl;
        pid_t child;
        uint64_t v;
        int c, r, status;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                switch (c) {
                case 's': spec_path = optarg; break;
                case 'm': mode = optarg; break;
                case 'd': l.direct = true; break;
                case 'b':
                        if (parse_u64(optarg, UINT64_MAX / 2, &l.bytes) < 0)
                                goto bad;
                        break;
                case 'W':
                        if (parse_u64(optarg, UINT64_MAX / 4, &l.warmup) < 0)
                                goto bad;
                        break;
                case 'w':
                        if (parse_u64(optarg, BENCH_PATTERN_SLICE_MAX, &v) < 0 || v == 0)
                                goto bad;
                        l.wsize = (size_t)v;
                        break;
                case 'u':
                        if (parse_u64(optarg, 4096, &v) < 0 || v == 0)
                                goto bad;
                        l.burst = (unsigned)v;
                        break;
                case 'r':
                        if (parse_u64(optarg, LOAD_ROUNDTRIPS_MAX, &v) < 0 || v == 0)
                                goto bad;
                        l.roundtrips = (unsigned)v;
                        break;
                case 'a':
                        if (parse_u64(optarg, BENCH_SPEC_STREAMS_MAX, &v) < 0 || v == 0)
                                goto bad;
                        l.active = (unsigned)v;
                        break;
                case 't':
                        l.seconds = atof(optarg);
                        if (!(l.seconds > 0 && l.seconds <= LOAD_SECONDS_MAX))
                                goto bad;
                        break;
                default: goto bad;
                }
        }
        if (!spec_path)
                goto bad;
        if (strcmp(mode, "throughput") == 0)
                l.mode = LOAD_THROUGHPUT;
        else if (strcmp(mode, "echo") == 0)
                l.mode = LOAD_ECHO;
        else if (strcmp(mode, "stall") == 0)
                l.mode = LOAD_STALL;
        else if (strcmp(mode, "idle") == 0)
                l.mode = LOAD_IDLE;
        else if (strcmp(mode, "scale") == 0)
                l.mode = LOAD_SCALE;
        else
                goto bad;
        if (l.mode == LOAD_ECHO && l.wsize > LOAD_MSG_MAX)
                goto bad;
        if (l.warmup > 0 && l.mode == LOAD_ECHO)
                goto bad;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                rl.rlim_cur = rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
        signal(SIGPIPE, SIG_IGN);
        r = bench_spec_load(spec_path, &l.spec);
        if (r < 0) {
                fprintf(stderr, "bench-load: %s: %s\n", spec_path, strerror(-r));
                return 2;
        }
        if (l.mode == LOAD_SCALE && (!l.active || l.active > l.spec->n)) {
                fprintf(stderr, "bench-load: scale needs --active N, at most the spec's %u streams\n", l.spec->n);
                return 2;
        }
        if (l.mode == LOAD_ECHO && l.spec->n % 2 != 0) {
                fprintf(stderr, "bench-load: echo needs to_guest/from_guest pairs\n");
                return 2;
        }
        l.fd = malloc(l.spec->n * sizeof(int));
        l.pos = calloc(l.spec->n, sizeof(uint64_t));
        if (!l.fd || !l.pos || bench_pattern_init(&l.pat) < 0 || pipe2(l.p2c, O_CLOEXEC) < 0 ||
            pipe2(l.c2p, O_CLOEXEC) < 0)
                return 2;
        for (unsigned i = 0; i < l.spec->n; i++)
                l.fd[i] = -1;

        r = host_open_endpoints(&l);
        if (r >= 0) {
                printf("ready\n");
                fflush(stdout);
                r = host_read_pids(&l);
        }
        if (r < 0) {
                print_result(&l, &res, mode);
                load_done(&l);
                return 1;
        }
        bench_proc_sample(l.pids, l.npids, &res.before);
        res.kernel_kb_before = bench_kernel_kb();
        res.fds_before = l.npids ? bench_proc_fds(l.pids[0]) : 0;

        fflush(stdout);
        child = fork();
        if (child < 0)
                return 2;
        if (child == 0)
                guest_main(&l);
        l.p2c[0] = safe_close(l.p2c[0]);
        l.c2p[1] = safe_close(l.c2p[1]);

        r = host_run(&l, &res);
        l.p2c[1] = safe_close(l.p2c[1]); /* releases the guest */
        for (unsigned i = 0; i < l.spec->n; i++)
                l.fd[i] = safe_close(l.fd[i]);
        if (r < 0)
                kill(child, SIGKILL);
        (void)waitpid(child, &status, 0);
        print_result(&l, &res, mode);
        load_done(&l);
        return r < 0 ? 1 : 0;
bad:
        usage();
        return 2;
}
