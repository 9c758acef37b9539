/* bench/epoll-relay.c: bench-epoll-relay, the comparisons a conmon-style monitor would be: one
 * thread, epoll, a 64 KiB buffer per stream (--copy, default), one shared 64 KiB read buffer with
 * per stream only the bytes a full endpoint did not take (--shared, conmon's way), or a pipe per
 * stream with splice (--splice, the zero-copy reference). Listens on every guest path of the spec, connects the
 * endpoint on accept. Like a daemon it stays up after its streams end (the driver stops it), so
 * its CPU time can still be read from /proc. */
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "bench/spec.h"

#define ER_BUF_SIZE (64u << 10)
#define ER_EVENTS 256
#define ER_ROUNDS 8 /* read/write rounds per wakeup before the next stream gets a turn */

enum er_mode { ER_COPY, ER_SHARED, ER_SPLICE };

struct er_stream {
        unsigned id;
        int listen_fd, src, dst;
        int pipe[2];  /* splice: src -> pipe -> dst */
        uint8_t *buf; /* copy: 64 KiB for life; shared: only what the endpoint has not taken yet */
        size_t off, len;
        bool src_eof, done;
        uint32_t src_ev, dst_ev; /* what epoll currently watches */
};

/* epoll data: stream index * 4 + which fd (0 listener, 1 src, 2 dst). */
struct er {
        const struct bench_spec *spec;
        struct er_stream *s;
        enum er_mode mode;
        uint8_t *shared; /* shared: the one read buffer */
        int ep;
};

static int watch(struct er *e, struct er_stream *s, int which, uint32_t want)
{
        uint32_t *cur = which == 1 ? &s->src_ev : &s->dst_ev;
        int fd = which == 1 ? s->src : s->dst;
        struct epoll_event ev = { .events = want, .data.u64 = (uint64_t)s->id * 4 + (unsigned)which };

        if (*cur == want)
                return 0;
        if (epoll_ctl(e->ep, EPOLL_CTL_MOD, fd, &ev) < 0)
                return negative_errno();
        *cur = want;
        return 0;
}

static void finish(struct er *e, struct er_stream *s)
{
        s->src = safe_close(s->src);
        s->dst = safe_close(s->dst); /* close() is the EOF for both a socket and a fifo */
        s->pipe[0] = safe_close(s->pipe[0]);
        s->pipe[1] = safe_close(s->pipe[1]);
        free(s->buf);
        s->buf = NULL;
        s->done = true;
}

static int open_endpoint(const struct bench_stream_spec *sp)
{
        int fd;

        if (sp->kind == BENCH_ENDPOINT_UNIX)
                return bench_unix_connect(sp->endpoint_path);
        fd = open(sp->endpoint_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        return fd < 0 ? negative_errno() : fd;
}

static int on_accept(struct er *e, struct er_stream *s)
{
        const struct bench_stream_spec *sp = &e->spec->s[s->id];
        _cleanup_close_ int g = -1, ep = -1;
        struct epoll_event ev;

        g = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (g < 0)
                return errno == EAGAIN ? 0 : negative_errno();
        s->listen_fd = safe_close(s->listen_fd); /* the guest dials each port once */
        (void)unlink(sp->guest_path);
        ep = open_endpoint(sp);
        if (ep < 0)
                return ep;
        if (e->mode == ER_SPLICE) {
                if (pipe2(s->pipe, O_NONBLOCK | O_CLOEXEC) < 0)
                        return negative_errno();
        } else if (e->mode == ER_COPY) {
                s->buf = malloc(ER_BUF_SIZE);
                if (!s->buf)
                        return -ENOMEM;
        }
        s->src = sp->dir == BENCH_DIR_FROM_GUEST ? TAKE_FD(g) : TAKE_FD(ep);
        s->dst = g >= 0 ? TAKE_FD(g) : TAKE_FD(ep);
        ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = (uint64_t)s->id * 4 + 1 };
        if (epoll_ctl(e->ep, EPOLL_CTL_ADD, s->src, &ev) < 0)
                return negative_errno();
        s->src_ev = EPOLLIN;
        ev = (struct epoll_event){ .events = 0, .data.u64 = (uint64_t)s->id * 4 + 2 };
        if (epoll_ctl(e->ep, EPOLL_CTL_ADD, s->dst, &ev) < 0)
                return negative_errno();
        s->dst_ev = 0;
        return 0;
}

/* Shared: what a full endpoint left of the shared buffer moves to a buffer of its own size, as the
 * next read overwrites the shared one. */
static int keep_rest(struct er *e, struct er_stream *s)
{
        if (e->mode != ER_SHARED || s->buf)
                return 0;
        s->buf = malloc(s->len);
        if (!s->buf)
                return -ENOMEM;
        memcpy(s->buf, e->shared + s->off, s->len);
        s->off = 0;
        return 0;
}

static uint8_t *pending(struct er *e, struct er_stream *s)
{
        return e->mode == ER_SHARED && !s->buf ? e->shared : s->buf;
}

static void drained(struct er *e, struct er_stream *s)
{
        if (e->mode != ER_SHARED)
                return;
        free(s->buf);
        s->buf = NULL;
}

/* Moves what it can; leaves epoll watching whichever side blocked. */
static int pump(struct er *e, struct er_stream *s)
{
        for (unsigned round = 0; round < ER_ROUNDS; round++) {
                ssize_t n;

                if (s->len == 0 && !s->src_eof) {
                        if (e->mode == ER_SPLICE)
                                n = splice(s->src, NULL, s->pipe[1], NULL, ER_BUF_SIZE,
                                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                        else
                                n = read(s->src, pending(e, s), ER_BUF_SIZE);
                        if (n < 0 && errno == EAGAIN)
                                return watch(e, s, 1, EPOLLIN) < 0 ? -EIO : watch(e, s, 2, 0);
                        if (n < 0)
                                return negative_errno();
                        if (n == 0)
                                s->src_eof = true;
                        s->off = 0;
                        s->len = (size_t)n;
                }
                while (s->len > 0) {
                        if (e->mode == ER_SPLICE)
                                n = splice(s->pipe[0], NULL, s->dst, NULL, s->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
                        else
                                n = write(s->dst, pending(e, s) + s->off, s->len);
                        if (n < 0 && errno == EAGAIN)
                                return keep_rest(e, s) < 0     ? -ENOMEM
                                       : watch(e, s, 1, 0) < 0 ? -EIO
                                                               : watch(e, s, 2, EPOLLOUT);
                        if (n <= 0)
                                return n < 0 ? negative_errno() : -EIO;
                        s->off += (size_t)n;
                        s->len -= (size_t)n;
                }
                drained(e, s);
                if (s->src_eof) {
                        finish(e, s);
                        return 0;
                }
        }
        /* Still busy: stay level-triggered on the source so the next wakeup comes back here. */
        return watch(e, s, 1, EPOLLIN) < 0 ? -EIO : watch(e, s, 2, 0);
}

int main(int argc, char **argv)
{
        _cleanup_(bench_spec_freep) struct bench_spec *spec = NULL;
        struct epoll_event ev[ER_EVENTS];
        struct er e = { .ep = -1 };
        const char *path = NULL;
        struct rlimit rl;
        int r;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--splice") == 0)
                        e.mode = ER_SPLICE;
                else if (strcmp(argv[i], "--shared") == 0)
                        e.mode = ER_SHARED;
                else if (strcmp(argv[i], "--copy") == 0)
                        e.mode = ER_COPY;
                else if (strcmp(argv[i], "--spec") == 0 && i + 1 < argc)
                        path = argv[++i];
                else
                        path = NULL, i = argc;
        }
        if (!path) {
                fprintf(stderr, "usage: bench-epoll-relay [--copy|--shared|--splice] --spec FILE\n");
                return 2;
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
                rl.rlim_cur = rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
        signal(SIGPIPE, SIG_IGN);
        r = bench_spec_load(path, &spec);
        if (r < 0) {
                fprintf(stderr, "bench-epoll-relay: %s: %s\n", path, strerror(-r));
                return 2;
        }
        e.spec = spec;
        e.s = calloc(spec->n, sizeof(*e.s));
        e.ep = epoll_create1(EPOLL_CLOEXEC);
        if (e.mode == ER_SHARED)
                e.shared = malloc(ER_BUF_SIZE);
        if (!e.s || e.ep < 0 || (e.mode == ER_SHARED && !e.shared))
                return 2;
        for (unsigned i = 0; i < spec->n; i++) {
                struct er_stream *s = &e.s[i];
                struct epoll_event le = { .events = EPOLLIN, .data.u64 = (uint64_t)i * 4 };

                *s = (struct er_stream){ .id = i, .src = -1, .dst = -1, .pipe = { -1, -1 } };
                s->listen_fd = bench_unix_listen(spec->s[i].guest_path, 4);
                if (s->listen_fd < 0) {
                        fprintf(stderr, "bench-epoll-relay: listen %s: %s\n", spec->s[i].guest_path,
                                strerror(-s->listen_fd));
                        return 1;
                }
                if (epoll_ctl(e.ep, EPOLL_CTL_ADD, s->listen_fd, &le) < 0)
                        return 1;
        }
        for (;;) {
                int n = epoll_wait(e.ep, ev, ER_EVENTS, -1);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return 1;
                for (int j = 0; j < n; j++) {
                        struct er_stream *s = &e.s[ev[j].data.u64 / 4];

                        if (s->done)
                                continue;
                        r = ev[j].data.u64 % 4 == 0 ? on_accept(&e, s) : pump(&e, s);
                        if (r < 0) {
                                /* One broken stream ends only itself, as in any relay. */
                                fprintf(stderr, "bench-epoll-relay: stream %u: %s\n", s->id, strerror(-r));
                                s->listen_fd = safe_close(s->listen_fd);
                                finish(&e, s);
                        }
                }
        }
}
