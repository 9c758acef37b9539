/* bench/relay-under-test.c: the "vsockmux" bench variant until the daemon path exists: one relay/
 * io_uring loop, a hybrid-vsock listener per spec line on "<vm uds>_<port>", and on each accept a
 * relay stream to the endpoint. Writes the relay's numbers to --stats every 200 ms so the driver
 * can read the buffer pool while the streams sit idle. Runs until killed. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/spec.h"
#include "relay/relay.h"
#include "util/log.h"

#define RUT_STATS_EVERY_NS (200ull * 1000 * 1000)

struct rut;

struct rut_stream {
        struct rut *rut;
        unsigned id;
        struct relay_listener *listener;
        struct relay_stream *stream;
};

struct rut {
        struct relay *relay;
        const struct bench_spec *spec;
        struct rut_stream *s;
        const char *stats_path;
        struct relay_timer *stats_timer;
        unsigned failed;
};

static void rut_on_done(struct relay_stream *s, int error, void *userdata)
{
        struct rut_stream *rs = userdata;

        if (error < 0) {
                log_errno(LOG_LEVEL_WARN, error, "relay-under-test: stream %u ended", rs->id);
                rs->rut->failed++;
        }
        rs->stream = relay_stream_free(s);
}

static const struct relay_stream_ops rut_stream_ops = { .on_done = rut_on_done };

/* As vsockmuxd opens a fifo sink (daemon/endpoint.c): read-write, then blocking, so a full pipe
 * makes the ring's write wait on the pipe rather than complete with -EAGAIN and be issued again
 * at once. The row measures the relay the daemon runs, not another way of writing. */
static int rut_open_endpoint(const struct bench_stream_spec *sp)
{
        _cleanup_close_ int fd = -1;
        int fl;

        if (sp->kind == BENCH_ENDPOINT_UNIX)
                return bench_unix_connect(sp->endpoint_path);
        fd = open(sp->endpoint_path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
                return negative_errno();
        return TAKE_FD(fd);
}

static void rut_on_accept(struct relay_listener *l, int fd, void *userdata)
{
        struct rut_stream *rs = userdata;
        const struct bench_stream_spec *sp = &rs->rut->spec->s[rs->id];
        _cleanup_close_ int guest = fd, endpoint = -1;
        int k;

        rs->listener = relay_listener_free(rs->listener); /* ONCE: done after this call */
        if (fd < 0) {
                log_errno(LOG_LEVEL_ERROR, fd, "relay-under-test: listener %u", rs->id);
                rs->rut->failed++;
                return;
        }
        endpoint = rut_open_endpoint(sp);
        if (endpoint < 0) {
                log_errno(LOG_LEVEL_ERROR, endpoint, "relay-under-test: endpoint %s", sp->endpoint_path);
                rs->rut->failed++;
                return;
        }
        k = relay_stream_new(rs->rut->relay,
                             sp->dir == BENCH_DIR_FROM_GUEST ? RELAY_STREAM_FROM_GUEST : RELAY_STREAM_TO_GUEST, guest,
                             endpoint, &rut_stream_ops, rs, &rs->stream);
        if (k < 0) {
                log_errno(LOG_LEVEL_ERROR, k, "relay-under-test: stream %u", rs->id);
                rs->rut->failed++;
                return;
        }
        guest = endpoint = -1; /* the stream owns both now */
}

/* The loop's turns, under the key `vsockmux stats --json` uses for them. */
static void rut_write_loop(FILE *f, const struct relay_stats *st)
{
        fprintf(f,
                "\"loop\":{\"turns\":%" PRIu64 ",\"wait_ns\":%" PRIu64 ",\"turns_waited\":%" PRIu64
                ",\"sleeps\":%" PRIu64 ",\"cqes\":%" PRIu64 ",\"cqes_per_turn\":[",
                st->turns, st->wait_ns, st->turns_waited, st->sleeps, st->cqes);
        for (unsigned i = 0; i < RELAY_STATS_CQE_BUCKETS; i++)
                fprintf(f, "%s%" PRIu64, i ? "," : "", st->cqes_per_turn[i]);
        fputs("]}", f);
}

static void rut_write_stats(struct relay_timer *t, void *userdata)
{
        struct rut *rut = userdata;
        struct relay_stats st;
        char tmp[BENCH_PATH_MAX + 8];
        FILE *f;

        relay_get_stats(rut->relay, &st);
        snprintf(tmp, sizeof(tmp), "%s.tmp", rut->stats_path);
        f = fopen(tmp, "we");
        if (f) {
                fprintf(f,
                        "{\"bytes_relayed\":%" PRIu64 ",\"bytes_spliced\":%" PRIu64
                        ",\"streams\":%u,\"listeners\":%u,\"pool_bufs_total\":%u,"
                        "\"pool_bufs_in_use\":%u,\"pool_bytes\":%zu,\"failed\":%u,",
                        st.bytes_relayed, st.bytes_spliced, st.streams, st.listeners, st.pool_bufs_total,
                        st.pool_bufs_in_use, st.pool_bytes, rut->failed);
                rut_write_loop(f, &st);
                fputs("}\n", f);
                if (fclose(f) == 0)
                        (void)rename(tmp, rut->stats_path);
        }
        (void)relay_timer_arm(t, RUT_STATS_EVERY_NS);
}

int main(int argc, char **argv)
{
        _cleanup_(bench_spec_freep) struct bench_spec *spec = NULL;
        _cleanup_(relay_freep) struct relay *relay = NULL;
        struct relay_transport t = { .kind = RELAY_TRANSPORT_HVSOCK };
        struct relay_config cfg;
        struct rut rut = {};
        const char *path = NULL;
        int k;

        relay_config_default(&cfg);
        for (int i = 1; i + 1 < argc; i += 2) {
                if (strcmp(argv[i], "--spec") == 0)
                        path = argv[i + 1];
                else if (strcmp(argv[i], "--stats") == 0)
                        rut.stats_path = argv[i + 1];
                /* Pool experiments; relay_new() checks the values against its limits. */
                else if (strcmp(argv[i], "--buf-size") == 0)
                        cfg.buf_size = (unsigned)strtoul(argv[i + 1], NULL, 0);
                else if (strcmp(argv[i], "--buf-count") == 0)
                        cfg.buf_count = (unsigned)strtoul(argv[i + 1], NULL, 0);
                else if (strcmp(argv[i], "--stream-bufs") == 0)
                        cfg.stream_max_bufs = (unsigned)strtoul(argv[i + 1], NULL, 0);
                else if (strcmp(argv[i], "--ring-bufs") == 0)
                        cfg.ring_bufs = (unsigned)strtoul(argv[i + 1], NULL, 0);
                else if (strcmp(argv[i], "--splice-pipe-size") == 0)
                        cfg.splice_pipe_size = (unsigned)strtoul(argv[i + 1], NULL, 0);
                else
                        path = NULL, i = argc;
        }
        if (!path) {
                fprintf(stderr, "usage: relay-under-test --spec FILE [--stats FILE] [--buf-size N] [--buf-count N]"
                                " [--stream-bufs N] [--ring-bufs N] [--splice-pipe-size N]\n");
                return 2;
        }
        k = bench_spec_load(path, &spec);
        if (k < 0) {
                fprintf(stderr, "relay-under-test: %s: %s\n", path, strerror(-k));
                return 2;
        }
        /* relay_new raises RLIMIT_NOFILE to the hard limit and ignores SIGPIPE. */
        k = relay_new(&cfg, &relay);
        if (k < 0) {
                fprintf(stderr, "relay-under-test: relay_new: %s\n", strerror(-k));
                return 1;
        }
        if (spec->n > relay_stream_capacity(relay)) {
                fprintf(stderr, "relay-under-test: %u streams, but the fd limit allows %u\n", spec->n,
                        relay_stream_capacity(relay));
                return 1;
        }
        rut.relay = relay;
        rut.spec = spec;
        rut.s = calloc(spec->n, sizeof(*rut.s));
        if (!rut.s)
                return 1;
        if (strlen(spec->vm_uds) >= sizeof(t.uds_path))
                return 2;
        strcpy(t.uds_path, spec->vm_uds);
        for (unsigned i = 0; i < spec->n; i++) {
                struct rut_stream *rs = &rut.s[i];

                rs->rut = &rut;
                rs->id = i;
                k = relay_listen(relay, &t, spec->s[i].port, RELAY_LISTEN_ONCE, rut_on_accept, rs, &rs->listener);
                if (k < 0) {
                        fprintf(stderr, "relay-under-test: listen on port %u: %s\n", spec->s[i].port, strerror(-k));
                        return 1;
                }
        }
        if (rut.stats_path) {
                k = relay_timer_new(relay, rut_write_stats, &rut, &rut.stats_timer);
                if (k < 0)
                        return 1;
                rut_write_stats(rut.stats_timer, &rut);
        }
        k = relay_run(relay);
        if (k < 0)
                fprintf(stderr, "relay-under-test: loop: %s\n", strerror(-k));
        return k < 0 ? 1 : 0;
}
