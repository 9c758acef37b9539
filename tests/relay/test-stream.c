/* tests/relay/test-stream.c: streams on the real loop between real guest processes and real endpoints. */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/relay/guest-data.h"
#include "tests/relay/guest-spawn.h"
#include "tests/io-uring-skip.h"

#define MIB (1024ull * 1024)

/* ---- a stream under test ---- */

struct st {
        struct relay *r;
        struct relay_stream *s;
        unsigned dones;
        bool done;
        int error;
        bool frozen;
        unsigned frozen_calls;
        struct relay_stream_counters at_done, at_frozen;
        size_t held_at_frozen;
        uint64_t tap_bytes, tap_hash;
        bool free_on_done;
};

static void on_done(struct relay_stream *s, int error, void *userdata)
{
        struct st *t = userdata;

        t->dones++;
        t->done = true;
        t->error = error;
        relay_stream_get_counters(s, &t->at_done);
        if (t->free_on_done)
                t->s = relay_stream_free(s);
}

static void on_frozen(struct relay_stream *s, void *userdata)
{
        struct st *t = userdata;

        t->frozen = true;
        t->frozen_calls++;
        relay_stream_get_counters(s, &t->at_frozen);
        relay_stream_get_held(s, &t->held_at_frozen, NULL);
}

static void on_tap(struct relay_stream *s, const void *data, size_t len, void *userdata)
{
        struct st *t = userdata;

        t->tap_bytes += len;
        t->tap_hash = guest_hash(t->tap_hash, data, len);
}

static const struct relay_stream_ops st_ops = { .on_done = on_done, .on_frozen = on_frozen };
static const struct relay_stream_ops st_tap_ops = { .on_done = on_done, .on_frozen = on_frozen, .on_tap = on_tap };

/* ---- the listener that turns the guest's dial into a stream ---- */

struct dial {
        struct st *st;
        enum relay_stream_dir dir;
        int endpoint_fd;
        const struct relay_stream_ops *ops;
        struct relay_listener *l;
        bool accepted;
        unsigned accepts;
        int replace_fd; /* MANY listener: later dials land here */
};

static void on_accept(struct relay_listener *l, int fd, void *userdata)
{
        struct dial *d = userdata;

        assert_true(fd >= 0);
        d->accepts++;
        if (d->accepted) {
                d->replace_fd = fd;
                return;
        }
        assert_int_equal(relay_stream_new(d->st->r, d->dir, fd, d->endpoint_fd, d->ops, d->st, &d->st->s), 0);
        d->accepted = true;
}

static void on_accept_restored(struct relay_listener *l, int fd, void *userdata)
{
        struct dial *d = userdata;
        struct relay_stream_counters seed = { .rx_guest = 1234567, .tx_endpoint = 1234567 };

        assert_true(fd >= 0);
        assert_int_equal(
                relay_stream_new_at(d->st->r, d->dir, fd, d->endpoint_fd, d->ops, &seed, true, d->st, &d->st->s), 0);
        d->accepted = true;
}

static void listen_for(struct relay *r, const char *dir, uint32_t port, enum relay_listen_mode mode, struct dial *d,
                       char *path, size_t pathlen)
{
        struct relay_transport t = { .kind = RELAY_TRANSPORT_HVSOCK };

        snprintf(t.uds_path, sizeof(t.uds_path), "%s/vm.vsock", dir);
        assert_int_equal(relay_listen(r, &t, port, mode, on_accept, d, &d->l), 0);
        assert_int_equal(relay_transport_hvsock_path(&t, port, path, pathlen), 0);
}

/* ---- an in-process sink on the far end of a socketpair endpoint ---- */

struct sink {
        struct relay_chan *c;
        uint64_t bytes, hash;
        bool closed;
        int error;
};

static ssize_t sink_data(struct relay_chan *c, const void *data, size_t len, void *userdata)
{
        struct sink *k = userdata;

        k->bytes += len;
        k->hash = guest_hash(k->hash, data, len);
        return (ssize_t)len;
}

static void sink_close(struct relay_chan *c, int error, void *userdata)
{
        struct sink *k = userdata;

        k->closed = true;
        k->error = error;
        k->c = NULL;
}

static const struct relay_chan_ops sink_ops = { .on_data = sink_data, .on_close = sink_close };

/* Returns the relay's end of a socketpair whose other end feeds k. */
static int sink_open(struct relay *r, struct sink *k)
{
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        *k = (struct sink){ .hash = GUEST_HASH_INIT };
        assert_int_equal(relay_chan_new(r, sv[1], &sink_ops, NULL, k, &k->c), 0);
        return sv[0];
}

static void expect_output(struct child *c, uint64_t bytes, uint64_t hash)
{
        char out[256], want[128];

        assert_int_equal(child_finish(c, out, sizeof(out)), 0);
        snprintf(want, sizeof(want), "%" PRIu64 " %016" PRIx64 "\n", bytes, hash);
        assert_string_equal(out, want);
}

static void num(char *buf, size_t len, uint64_t v)
{
        snprintf(buf, len, "%" PRIu64, v);
}

/* The relay-stream-splice run (VSOCKMUX_RELAY_SPLICE_MIN=1) puts every from-guest stream with a
 * socket or fifo endpoint on the splice path: where a test says so, it must really have gone there. */
static void expect_spliced_when_forced(struct relay *r)
{
        struct relay_stats st;

        if (!getenv("VSOCKMUX_RELAY_SPLICE_MIN"))
                return;
        relay_get_stats(r, &st);
        assert_true(st.bytes_spliced > 0);
}

/* ---- tests ---- */

static void test_stream_64mib_from_guest_arrives_intact_through_a_pipe(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 64 * MIB, seed = 42;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct child guest, sink;
        char dir[64], path[128], n[32], sd[32];
        int p[2];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        spawn_guest((const char *[]){ "sink", NULL }, p[0], -1, &sink);
        close(p[0]);
        d.endpoint_fd = p[1];
        listen_for(r, dir, 1000, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        num(n, sizeof(n), total);
        num(sd, sizeof(sd), seed);
        spawn_guest((const char *[]){ "send", path, n, sd, "65536", NULL }, -1, -1, &guest);

        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.at_done.rx_guest, total);
        assert_int_equal(t.at_done.tx_endpoint, total);
        expect_spliced_when_forced(r);
        assert_int_equal(child_finish(&guest, NULL, 0), 0);
        t.s = relay_stream_free(t.s); /* closes the pipe: the sink sees EOF */
        expect_output(&sink, total, guest_data_hash(seed, total));
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

/* The pool is large (it bounds what stalled streams may hold), but a busy stream should cycle a few
 * warm buffers: each one filled is the one most recently sent, not the one freed longest ago. */
static void test_stream_bulk_traffic_touches_only_a_few_pool_buffers(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 32 * MIB, seed = 5;
        struct relay_config cfg;
        struct relay_stats stats;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct child guest, sink;
        char dir[64], path[128], n[32], sd[32];
        int p[2];

        relay_config_default(&cfg);
        cfg.no_splice = true; /* a test of the ring's buffers */
        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(&cfg, &r), 0);
        t.r = r;
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        spawn_guest((const char *[]){ "sink", NULL }, p[0], -1, &sink);
        close(p[0]);
        d.endpoint_fd = p[1];
        listen_for(r, dir, 1000, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        num(n, sizeof(n), total);
        num(sd, sizeof(sd), seed);
        spawn_guest((const char *[]){ "send", path, n, sd, "65536", NULL }, -1, -1, &guest);

        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.at_done.tx_endpoint, total);
        relay_get_stats(r, &stats);
        /* What the kernel is offered plus the most one stream holds (relay.h), far below buf_count. */
        assert_true(stats.pool_bufs_total <= cfg.ring_bufs + 2 * cfg.stream_max_bufs + 1);
        assert_true(stats.pool_bufs_total < cfg.buf_count);
        assert_int_equal(child_finish(&guest, NULL, 0), 0);
        t.s = relay_stream_free(t.s);
        expect_output(&sink, total, guest_data_hash(seed, total));
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

static void test_stream_stdin_eof_half_closes_the_guest(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 3 * MIB + 17, seed = 7;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_TO_GUEST, .ops = &st_ops };
        struct child guest, source;
        char dir[64], path[128], n[32], sd[32];
        int p[2];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        num(n, sizeof(n), total);
        num(sd, sizeof(sd), seed);
        spawn_guest((const char *[]){ "source", n, sd, NULL }, -1, p[1], &source);
        close(p[1]);
        d.endpoint_fd = p[0];
        listen_for(r, dir, 1001, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        /* The guest reads to EOF: it only finishes if the host's EOF became a half-close. */
        spawn_guest((const char *[]){ "recv", path, NULL }, -1, -1, &guest);

        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.at_done.rx_endpoint, total);
        assert_int_equal(t.at_done.tx_guest, total);
        expect_output(&guest, total, guest_data_hash(seed, total));
        assert_int_equal(child_finish(&source, NULL, 0), 0);
        t.s = relay_stream_free(t.s);
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

/* Runs the loop until the child has printed (or closed its output); fails past TEST_WAIT_NS. */
static void guest_output_wait(struct relay *r, struct child *c)
{
        struct pollfd p = { .fd = c->out, .events = POLLIN };

        for (uint64_t waited = 0; poll(&p, 1, 0) == 0; waited += 10 * 1000 * 1000) {
                if (waited > TEST_WAIT_NS)
                        fail_msg("the guest printed nothing");
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
        }
}

/* The stdin end confirmation: on_done comes at the half-close, as without it, and the connection
 * stays until the guest's count (confirm), closed by the stream itself; a guest that never
 * confirms (silent) holds nothing but the fd of a done stream, which the owner's free closes. A
 * count short of what was sent (short) is told to the owner, and the connection closes the same. */
static void stdin_eof_confirm(const char *mode)
{
        bool confirm = strcmp(mode, "silent") != 0, under = strcmp(mode, "short") == 0;
        struct events_seen e;
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 300001;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_TO_GUEST, .ops = &st_ops };
        struct child guest;
        char dir[64], path[128], file[128], out[128], want[64];
        int fd;

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        events_listen(r, &e);
        t.r = r;
        snprintf(file, sizeof(file), "%s/stdin", dir);
        fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t)total), 0);
        close(fd);
        d.endpoint_fd = open(file, O_RDONLY | O_CLOEXEC);
        assert_true(d.endpoint_fd >= 0);
        listen_for(r, dir, 1009, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        spawn_guest((const char *[]){ "recv-eof", path, mode, NULL }, -1, -1, &guest);
        run_until(r, &d.accepted);
        assert_int_equal(relay_stream_set_eof_confirm(t.s, true), 0);
        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.at_done.tx_guest, total);
        /* The guest prints once the host closed: with its count, while the stream still lives. */
        if (!confirm)
                t.s = relay_stream_free(t.s);
        guest_output_wait(r, &guest);
        assert_int_equal(child_finish(&guest, out, sizeof(out)), 0);
        snprintf(want, sizeof(want), "%" PRIu64 " closed\n", total);
        assert_string_equal(out, want);
        for (int k = 0; k < _RELAY_EVENT_KIND_MAX; k++)
                assert_int_equal(e.count[k], under && k == RELAY_EVENT_STDIN_END_MISCOUNTED);
        if (under) {
                assert_int_equal(e.last[RELAY_EVENT_STDIN_END_MISCOUNTED].bytes, total - 1);
                assert_int_equal(e.last[RELAY_EVENT_STDIN_END_MISCOUNTED].sent, total);
                assert_int_equal(strncmp(e.label[RELAY_EVENT_STDIN_END_MISCOUNTED], "fd ", 3), 0);
        }
        t.s = relay_stream_free(t.s);
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

static void test_stream_stdin_eof_confirmed_by_the_guest_then_closed(void **state)
{
        stdin_eof_confirm("confirm");
}

static void test_stream_stdin_eof_a_guest_that_never_confirms_holds_only_its_fd(void **state)
{
        stdin_eof_confirm("silent");
}

static void test_stream_stdin_eof_confirmed_short_is_told_then_closed(void **state)
{
        stdin_eof_confirm("short");
}

/* stdin from a fifo opened by path, as daemon/endpoint.c opens one (non-blocking, then blocking):
 * its writer's close is the end, a half-close the guest sees. */
static void test_stream_stdin_fifo_writer_close_half_closes_the_guest(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 100000, seed = 9;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_TO_GUEST, .ops = &st_ops };
        struct child guest, source;
        char dir[64], path[128], n[32], sd[32], fifo[128];
        int rd, wr;

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        snprintf(fifo, sizeof(fifo), "%s/in.fifo", dir);
        assert_int_equal(mkfifo(fifo, 0600), 0);
        rd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(rd >= 0);
        assert_int_equal(fcntl(rd, F_SETFL, fcntl(rd, F_GETFL) & ~O_NONBLOCK), 0);
        wr = open(fifo, O_WRONLY | O_CLOEXEC);
        assert_true(wr >= 0);
        num(n, sizeof(n), total);
        num(sd, sizeof(sd), seed);
        spawn_guest((const char *[]){ "source", n, sd, NULL }, -1, wr, &source);
        close(wr);
        d.endpoint_fd = rd;
        listen_for(r, dir, 1001, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        /* The guest reads to EOF: it only finishes if the writer's close became a half-close. */
        spawn_guest((const char *[]){ "recv", path, NULL }, -1, -1, &guest);

        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.at_done.tx_guest, total);
        expect_output(&guest, total, guest_data_hash(seed, total));
        assert_int_equal(child_finish(&source, NULL, 0), 0);
        t.s = relay_stream_free(t.s);
        relay_listener_free(d.l);
        unlink(fifo);
        rm_tmpdir(dir);
}

static void test_stream_stdin_from_regular_file_reaches_guest(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 700001, seed = 8;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_TO_GUEST, .ops = &st_tap_ops };
        struct child guest;
        char dir[64], path[128], file[128];
        uint8_t *buf = malloc(total);
        int fd;

        assert_non_null(buf);
        make_tmpdir(dir, sizeof(dir));
        snprintf(file, sizeof(file), "%s/stdin", dir);
        guest_data_fill(seed, 0, buf, total);
        fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, buf, total), (ssize_t)total);
        close(fd);
        free(buf);

        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        t.tap_hash = GUEST_HASH_INIT;
        d.endpoint_fd = open(file, O_RDONLY | O_CLOEXEC);
        assert_true(d.endpoint_fd >= 0);
        listen_for(r, dir, 1002, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        spawn_guest((const char *[]){ "recv", path, NULL }, -1, -1, &guest);
        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        expect_output(&guest, total, guest_data_hash(seed, total));
        /* the tap saw exactly what the guest got */
        assert_int_equal(t.tap_bytes, total);
        assert_int_equal(t.tap_hash, guest_data_hash(seed, total));
        t.s = relay_stream_free(t.s);
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

static void stalled_sink(const char *chunk, uint32_t port)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 16 * MIB, seed = 9;
        struct relay_config cfg;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct child guest, sink;
        char dir[64], path[128], n[32], sd[32];
        size_t max_bytes = 0;
        unsigned max_bufs = 0, max_pool = 0;
        int p[2];

        relay_config_default(&cfg);
        cfg.no_splice = true; /* the ring's cap; test_stream_splice_stalled_sink_* has the splice path's */
        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(&cfg, &r), 0);
        t.r = r;
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        /* the sink sleeps a second before it reads anything */
        spawn_guest((const char *[]){ "sink", "1000", NULL }, p[0], -1, &sink);
        close(p[0]);
        d.endpoint_fd = p[1];
        listen_for(r, dir, port, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        num(n, sizeof(n), total);
        num(sd, sizeof(sd), seed);
        spawn_guest((const char *[]){ "send", path, n, sd, chunk, NULL }, -1, -1, &guest);

        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; !t.done;) {
                struct relay_stats stats;
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                if (t.s) {
                        size_t b;
                        unsigned k;
                        relay_stream_get_held(t.s, &b, &k);
                        max_bytes = MAX(max_bytes, b);
                        max_bufs = MAX(max_bufs, k);
                }
                relay_get_stats(r, &stats);
                max_pool = MAX(max_pool, stats.pool_bufs_in_use);
        }
        assert_int_equal(t.error, 0);
        /* the stall really backed up into the relay (reads pause with one buffer's worth of room) ... */
        assert_true(max_bytes >= (size_t)(cfg.stream_max_bufs - 1) * cfg.buf_size);
        /* ... and the relay held no more than its cap in bytes, in a bounded number of buffers */
        assert_true(max_bytes <= (size_t)cfg.stream_max_bufs * cfg.buf_size);
        assert_true(max_bufs <= 2 * cfg.stream_max_bufs + 1);
        assert_true(max_pool <= 2 * cfg.stream_max_bufs + 1);
        assert_int_equal(child_finish(&guest, NULL, 0), 0);
        t.s = relay_stream_free(t.s);
        expect_output(&sink, total, guest_data_hash(seed, total));
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

static void test_stream_stalled_sink_holds_at_most_the_cap_and_loses_nothing(void **state)
{
        stalled_sink("65536", 1003);
}

/* A guest writing 1000-byte pieces: held bytes get packed, the buffer count stays bounded. */
static void test_stream_stalled_sink_with_chatty_guest_keeps_buffers_bounded(void **state)
{
        stalled_sink("1000", 1004);
}

/* ---- a thousand at once ---- */

#define MANY_STREAMS 1000
#define MANY_PER_GUEST 250
#define MANY_BYTES 65536
#define MANY_PORT 20000

struct many {
        struct relay *r;
        struct st st[MANY_STREAMS];
        struct sink sink[MANY_STREAMS];
        struct dial dial[MANY_STREAMS];
};

static void test_stream_thousand_concurrent_streams_each_arrive_intact(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct many *m = calloc(1, sizeof(*m));
        struct child guests[MANY_STREAMS / MANY_PER_GUEST];
        char dir[64], base[128], port[32], cnt[32], bytes[32];
        unsigned done = 0, closed = 0;
        struct relay_stats stats;

        assert_non_null(m);
        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_true(relay_stream_capacity(r) >= MANY_STREAMS);
        m->r = r;
        for (unsigned i = 0; i < MANY_STREAMS; i++) {
                char path[128];
                m->st[i] = (struct st){ .r = r, .free_on_done = true };
                m->dial[i] = (struct dial){ .st = &m->st[i], .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
                m->dial[i].endpoint_fd = sink_open(r, &m->sink[i]);
                listen_for(r, dir, MANY_PORT + i, RELAY_LISTEN_ONCE, &m->dial[i], path, sizeof(path));
        }
        snprintf(base, sizeof(base), "%s/vm.vsock", dir);
        for (unsigned g = 0; g < MANY_STREAMS / MANY_PER_GUEST; g++) {
                num(port, sizeof(port), MANY_PORT + g * MANY_PER_GUEST);
                num(cnt, sizeof(cnt), MANY_PER_GUEST);
                num(bytes, sizeof(bytes), MANY_BYTES);
                spawn_guest((const char *[]){ "multi-send", base, port, cnt, bytes, NULL }, -1, -1, &guests[g]);
        }
        for (uint64_t deadline = relay_now_ns(r) + 4 * TEST_WAIT_NS; done < MANY_STREAMS || closed < MANY_STREAMS;) {
                assert_int_equal(relay_run_once(r, 100 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                done = closed = 0;
                for (unsigned i = 0; i < MANY_STREAMS; i++) {
                        done += m->st[i].done;
                        closed += m->sink[i].closed;
                }
        }
        relay_get_stats(r, &stats);
        assert_int_equal(stats.streams, 0);
        assert_int_equal(stats.pool_bufs_in_use, 0);
        for (unsigned i = 0; i < MANY_STREAMS; i++) {
                uint64_t want = MANY_BYTES + (i % MANY_PER_GUEST) * 13;
                assert_int_equal(m->st[i].dones, 1);
                assert_int_equal(m->st[i].error, 0);
                assert_int_equal(m->sink[i].error, 0);
                assert_int_equal(m->sink[i].bytes, want);
                assert_int_equal(m->sink[i].hash, guest_data_hash(MANY_PORT + i, want));
                relay_listener_free(m->dial[i].l);
        }
        for (unsigned g = 0; g < MANY_STREAMS / MANY_PER_GUEST; g++)
                assert_int_equal(child_finish(&guests[g], NULL, 0), 0);
        free(m);
        rm_tmpdir(dir);
}

/* 64 streams on a 16-buffer pool: receives run dry (ENOBUFS), wait for buffers, and resume. */
static void test_stream_small_pool_shared_by_many_streams_loses_nothing(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        enum { N = 64, PORT = 3000, BYTES = 200000 };
        struct relay_config cfg = { .ring_entries = 64, .buf_size = 4096, .buf_count = 16, .stream_max_bufs = 4 };
        struct st *st = calloc(N, sizeof(*st));
        struct sink *sk = calloc(N, sizeof(*sk));
        struct dial *dl = calloc(N, sizeof(*dl));
        struct child guest;
        char dir[64], base[128], port[32], cnt[32], bytes[32];
        unsigned done = 0;
        struct relay_stats stats;

        assert_non_null(st);
        assert_non_null(sk);
        assert_non_null(dl);
        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(&cfg, &r), 0);
        for (unsigned i = 0; i < N; i++) {
                char path[128];
                st[i] = (struct st){ .r = r };
                dl[i] = (struct dial){ .st = &st[i], .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
                dl[i].endpoint_fd = sink_open(r, &sk[i]);
                listen_for(r, dir, PORT + i, RELAY_LISTEN_ONCE, &dl[i], path, sizeof(path));
        }
        snprintf(base, sizeof(base), "%s/vm.vsock", dir);
        num(port, sizeof(port), PORT);
        num(cnt, sizeof(cnt), N);
        num(bytes, sizeof(bytes), BYTES);
        spawn_guest((const char *[]){ "multi-send", base, port, cnt, bytes, NULL }, -1, -1, &guest);
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; done < N;) {
                assert_int_equal(relay_run_once(r, 100 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                relay_get_stats(r, &stats);
                assert_true(stats.pool_bufs_in_use <= cfg.buf_count);
                done = 0;
                for (unsigned i = 0; i < N; i++)
                        done += st[i].done;
        }
        for (unsigned i = 0; i < N; i++) {
                uint64_t want = BYTES + i * 13;
                assert_int_equal(st[i].error, 0);
                st[i].s = relay_stream_free(st[i].s);
                run_until(r, &sk[i].closed);
                assert_int_equal(sk[i].bytes, want);
                assert_int_equal(sk[i].hash, guest_data_hash(PORT + i, want));
                relay_listener_free(dl[i].l);
        }
        assert_int_equal(child_finish(&guest, NULL, 0), 0);
        free(st);
        free(sk);
        free(dl);
        rm_tmpdir(dir);
}

/* ---- failures stay with their stream ---- */

static void test_stream_guest_dropping_stdin_ends_only_that_stream(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct st a = {}, b = {};
        struct dial da = { .st = &a, .dir = RELAY_STREAM_TO_GUEST, .ops = &st_ops };
        struct dial db = { .st = &b, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct child ga, gb, source;
        struct sink k;
        char dir[64], pa[128], pb[128];
        int p[2];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        a.r = b.r = r;
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        spawn_guest((const char *[]){ "source", "1000000000", "1", NULL }, -1, p[1], &source);
        close(p[1]);
        da.endpoint_fd = p[0];
        db.endpoint_fd = sink_open(r, &k);
        listen_for(r, dir, 1010, RELAY_LISTEN_ONCE, &da, pa, sizeof(pa));
        listen_for(r, dir, 1011, RELAY_LISTEN_ONCE, &db, pb, sizeof(pb));
        /* guest A takes 100000 bytes of its stdin and goes away */
        spawn_guest((const char *[]){ "recv", pa, "100000", NULL }, -1, -1, &ga);
        spawn_guest((const char *[]){ "send", pb, "4194304", "2", "4096", NULL }, -1, -1, &gb);

        run_until(r, &a.done);
        assert_int_equal(a.error, -ECONNRESET);
        assert_int_equal(a.dones, 1);
        assert_true(a.at_done.tx_guest >= 100000);
        run_until(r, &b.done);
        assert_int_equal(b.error, 0);
        b.s = relay_stream_free(b.s);
        run_until(r, &k.closed);
        assert_int_equal(k.bytes, 4194304);
        assert_int_equal(k.hash, guest_data_hash(2, 4194304));
        assert_int_equal(child_finish(&ga, NULL, 0), 0);
        assert_int_equal(child_finish(&gb, NULL, 0), 0);
        a.s = relay_stream_free(a.s); /* the source now sees EPIPE and stops */
        run_idle(r, 3);
        assert_int_not_equal(child_finish(&source, NULL, 0), 0);
        relay_listener_free(da.l);
        relay_listener_free(db.l);
        rm_tmpdir(dir);
}

static void test_stream_guest_hanging_up_on_quiet_stdin_ends_the_stream(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_TO_GUEST, .ops = &st_ops };
        struct child guest;
        char dir[64], path[128];
        int p[2];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        /* the host side of stdin stays open and says nothing */
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        d.endpoint_fd = p[0];
        listen_for(r, dir, 1013, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        spawn_guest((const char *[]){ "dial", path, NULL }, -1, -1, &guest);
        assert_int_equal(child_finish(&guest, NULL, 0), 0);
        run_until(r, &t.done);
        assert_int_equal(t.error, -ECONNRESET);
        assert_int_equal(t.dones, 1);
        t.s = relay_stream_free(t.s);
        close(p[1]);
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

static void test_stream_guest_killed_mid_stdout_delivers_everything_it_sent(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct relay_stream_counters c = {};
        struct child guest;
        struct sink k;
        char dir[64], path[128];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        d.endpoint_fd = sink_open(r, &k);
        listen_for(r, dir, 1012, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        spawn_guest((const char *[]){ "send", path, "100000000000", "3", NULL }, -1, -1, &guest);
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; c.rx_guest < 2 * MIB;) {
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                if (t.s)
                        relay_stream_get_counters(t.s, &c);
        }
        kill(guest.pid, SIGKILL);
        assert_int_equal(child_finish(&guest, NULL, 0), 128 + SIGKILL);
        run_until(r, &t.done);
        /* a unix socket shows a dead peer as EOF: the stream ends and every byte it got is delivered */
        assert_int_equal(t.at_done.tx_endpoint, t.at_done.rx_guest);
        t.s = relay_stream_free(t.s);
        run_until(r, &k.closed);
        assert_int_equal(k.bytes, t.at_done.rx_guest);
        assert_int_equal(k.hash, guest_data_hash(3, k.bytes));
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

static void test_stream_endpoint_closing_early_ends_only_that_stream_with_epipe(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct events_seen e;
        struct st a = {}, b = {};
        struct dial da = { .st = &a, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct dial db = { .st = &b, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct child ga, gb, sink;
        struct sink k;
        char dir[64], pa[128], pb[128];
        int p[2];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        events_listen(r, &e);
        a.r = b.r = r;
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        /* A's endpoint process reads 100000 bytes and exits */
        spawn_guest((const char *[]){ "sink", "0", "100000", NULL }, p[0], -1, &sink);
        close(p[0]);
        da.endpoint_fd = p[1];
        db.endpoint_fd = sink_open(r, &k);
        listen_for(r, dir, 1020, RELAY_LISTEN_ONCE, &da, pa, sizeof(pa));
        listen_for(r, dir, 1021, RELAY_LISTEN_ONCE, &db, pb, sizeof(pb));
        spawn_guest((const char *[]){ "send", pa, "16777216", "4", NULL }, -1, -1, &ga);
        spawn_guest((const char *[]){ "send", pb, "4194304", "5", NULL }, -1, -1, &gb);

        /* The guest is not held up by an endpoint that is gone: the rest of its output is read and
         * dropped, and the error is reported when that output ends. */
        run_until(r, &a.done);
        assert_int_equal(a.error, -EPIPE);
        assert_int_equal(a.dones, 1);
        /* told once, by the stream's label (unset: its guest fd) */
        assert_int_equal(e.count[RELAY_EVENT_ENDPOINT_FAILED], 1);
        assert_int_equal(e.last[RELAY_EVENT_ENDPOINT_FAILED].error, -EPIPE);
        assert_int_equal(strncmp(e.label[RELAY_EVENT_ENDPOINT_FAILED], "fd ", 3), 0);
        assert_int_equal(a.at_done.rx_guest, 16777216);
        assert_true(a.at_done.tx_endpoint < 16777216);
        expect_output(&sink, 100000, guest_data_hash(4, 100000));
        assert_int_equal(child_finish(&ga, NULL, 0), 0);
        a.s = relay_stream_free(a.s);
        run_until(r, &b.done);
        assert_int_equal(b.error, 0);
        b.s = relay_stream_free(b.s);
        run_until(r, &k.closed);
        assert_int_equal(k.bytes, 4194304);
        assert_int_equal(k.hash, guest_data_hash(5, 4194304));
        assert_int_equal(child_finish(&gb, NULL, 0), 0);
        relay_listener_free(da.l);
        relay_listener_free(db.l);
        rm_tmpdir(dir);
}

/* ---- freeze, resume, replace ---- */

static void test_stream_freeze_flushes_and_resume_loses_nothing(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 8 * MIB;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct relay_stream_counters c = {}, later;
        struct child guest;
        struct sink k;
        char dir[64], path[128];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        d.endpoint_fd = sink_open(r, &k);
        listen_for(r, dir, 1030, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        spawn_guest((const char *[]){ "send", path, "8388608", "6", "4096", NULL }, -1, -1, &guest);
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; c.rx_guest < MIB;) {
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                if (t.s)
                        relay_stream_get_counters(t.s, &c);
        }
        assert_int_equal(relay_stream_freeze(t.s), 0);
        assert_int_equal(relay_stream_freeze(t.s), -EALREADY);
        assert_false(t.frozen); /* never from inside the call */
        run_until(r, &t.frozen);
        assert_int_equal(t.frozen_calls, 1);
        assert_int_equal(t.held_at_frozen, 0);
        assert_int_equal(t.at_frozen.tx_endpoint, t.at_frozen.rx_guest);
        assert_true(t.at_frozen.rx_guest < total);

        /* frozen means frozen: no reads while the guest keeps writing */
        for (int i = 0; i < 20; i++)
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
        relay_stream_get_counters(t.s, &later);
        assert_memory_equal(&later, &t.at_frozen, sizeof(later));
        assert_false(t.done);

        assert_int_equal(relay_stream_resume(t.s), 0);
        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.at_done.rx_guest, total);
        expect_spliced_when_forced(r);
        t.s = relay_stream_free(t.s);
        run_until(r, &k.closed);
        assert_int_equal(k.bytes, total);
        assert_int_equal(k.hash, guest_data_hash(6, total));
        assert_int_equal(child_finish(&guest, NULL, 0), 0);
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

/* Bytes the guest wrote before the freeze and the kernel still holds are read and delivered before
 * on_frozen: a save then closes the connection, and a guest without the resume extension never
 * sends them again. The loop does not run between the write and the freeze, so the armed receive
 * has not taken them: only the freeze's drain can. */
static void test_stream_freeze_drains_what_the_guest_wrote_before_it(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const size_t total = 150000; /* more than one pool buffer, less than the socket holds */
        _cleanup_free_ uint8_t *data = malloc(total);
        struct relay_stream_counters later;
        struct st t = {};
        struct sink k;
        int g[2];

        assert_non_null(data);
        for (size_t i = 0; i < total; i++)
                data[i] = (uint8_t)(i * 7 + 3);
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g), 0);
        assert_int_equal(relay_stream_new(r, RELAY_STREAM_FROM_GUEST, g[0], sink_open(r, &k), &st_ops, &t, &t.s), 0);
        run_idle(r, 3); /* the receive is armed and waiting */
        assert_int_equal(write(g[1], data, total), (ssize_t)total);
        assert_int_equal(relay_stream_freeze(t.s), 0);
        run_until(r, &t.frozen);
        assert_int_equal(t.held_at_frozen, 0);
        assert_int_equal(t.at_frozen.rx_guest, total);
        assert_int_equal(t.at_frozen.tx_endpoint, total);
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; k.bytes < total;) {
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
        }
        assert_int_equal(k.bytes, total);
        assert_int_equal(k.hash, guest_hash(GUEST_HASH_INIT, data, total));

        /* Written after the freeze: not read until a resume. */
        assert_int_equal(write(g[1], data, 1000), 1000);
        run_idle(r, 5);
        relay_stream_get_counters(t.s, &later);
        assert_int_equal(later.rx_guest, total);
        assert_int_equal(relay_stream_resume(t.s), 0);
        close(g[1]);
        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.at_done.rx_guest, total + 1000);
        t.s = relay_stream_free(t.s);
        run_until(r, &k.closed);
        assert_int_equal(k.bytes, total + 1000);
}

/* A live upgrade: the frozen stream gives up both fds, a new stream (the new daemon's) takes them
 * with the counters, and the guest, which never reconnects, loses and repeats nothing. */
static void test_stream_release_hands_both_fds_on_and_a_new_stream_loses_nothing(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 8 * MIB;
        struct st t = {}, t2 = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct relay_stream_counters c = {}, handed;
        int gfd = -1, efd = -1;
        struct child guest;
        struct sink k;
        char dir[64], path[128];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = t2.r = r;
        d.endpoint_fd = sink_open(r, &k);
        listen_for(r, dir, 1031, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        spawn_guest((const char *[]){ "send", path, "8388608", "7", "4096", NULL }, -1, -1, &guest);
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; c.rx_guest < MIB;) {
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                if (t.s)
                        relay_stream_get_counters(t.s, &c);
        }
        assert_int_equal(relay_stream_release(t.s, &gfd, &efd, &handed), -EINVAL); /* not frozen */
        assert_int_equal(relay_stream_freeze(t.s), 0);
        run_until(r, &t.frozen);
        assert_int_equal(relay_stream_release(t.s, &gfd, &efd, &handed), 0);
        t.s = NULL;
        assert_true(gfd >= 0 && efd >= 0);
        assert_memory_equal(&handed, &t.at_frozen, sizeof(handed));
        assert_int_equal(handed.tx_endpoint, handed.rx_guest);
        /* both fds are still open and unchanged: the relay closed neither */
        assert_true(fcntl(gfd, F_GETFD) >= 0 && fcntl(efd, F_GETFD) >= 0);
        run_idle(r, 5);
        assert_false(k.closed);

        assert_int_equal(relay_stream_new_at(r, RELAY_STREAM_FROM_GUEST, gfd, efd, &st_ops, &handed, false, &t2, &t2.s),
                         0);
        run_until(r, &t2.done);
        assert_int_equal(t2.error, 0);
        assert_int_equal(t2.at_done.rx_guest, total);
        assert_int_equal(t2.at_done.tx_endpoint, total);
        assert_false(t.done);
        t2.s = relay_stream_free(t2.s);
        run_until(r, &k.closed);
        assert_int_equal(k.bytes, total);
        assert_int_equal(k.hash, guest_data_hash(7, total));
        assert_int_equal(child_finish(&guest, NULL, 0), 0);
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

static void test_stream_replace_guest_sends_offset_then_resumes_exactly_once(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 6 * MIB;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops, .replace_fd = -1 };
        struct relay_stream_counters c = {};
        struct child g1, g2;
        struct sink k;
        char dir[64], path[128], out[128], want[64];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        d.endpoint_fd = sink_open(r, &k);
        listen_for(r, dir, 1040, RELAY_LISTEN_MANY, &d, path, sizeof(path));
        /* the first guest dies part way; what it wrote but the host never read is its loss */
        spawn_guest((const char *[]){ "send", path, "6291456", "10", "1000", NULL }, -1, -1, &g1);
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; c.rx_guest < MIB;) {
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                if (t.s)
                        relay_stream_get_counters(t.s, &c);
        }
        assert_int_equal(relay_stream_freeze(t.s), 0);
        run_until(r, &t.frozen);
        /* a save lets go of the guest connection but keeps endpoint and counters */
        assert_int_equal(relay_stream_detach_guest(t.s), 0);
        kill(g1.pid, SIGKILL);
        assert_int_not_equal(child_finish(&g1, NULL, 0), 0); /* killed, or its write failed first */

        /* the redialled guest learns the host's count and sends from there */
        spawn_guest((const char *[]){ "send-hdr", path, "6291456", "10", NULL }, -1, -1, &g2);
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; d.replace_fd < 0;) {
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
        }
        assert_int_equal(relay_stream_replace_guest(t.s, d.replace_fd, true), 0);
        assert_int_equal(relay_stream_resume(t.s), 0);
        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.at_done.rx_guest, total);
        expect_spliced_when_forced(r);
        snprintf(want, sizeof(want), "offset %" PRIu64 "\n", t.at_frozen.rx_guest);
        assert_int_equal(child_finish(&g2, out, sizeof(out)), 0);
        assert_string_equal(out, want);
        t.s = relay_stream_free(t.s);
        run_until(r, &k.closed);
        assert_int_equal(k.bytes, total);
        assert_int_equal(k.hash, guest_data_hash(10, total));
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

static void test_stream_restored_with_seed_sends_offset_and_continues(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 3 * MIB, already = 1234567; /* the seed on_accept_restored uses */
        struct st t = {};
        struct child guest;
        struct sink k;
        char dir[64], path[128], out[128], want[64];
        struct relay_transport tr = { .kind = RELAY_TRANSPORT_HVSOCK };
        struct dial d = { .st = &t };
        int endpoint;

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        endpoint = sink_open(r, &k);
        snprintf(tr.uds_path, sizeof(tr.uds_path), "%s/vm.vsock", dir);
        assert_int_equal(relay_transport_hvsock_path(&tr, 1041, path, sizeof(path)), 0);
        /* accept by hand: a restored daemon creates the stream with the saved counters */
        d.dir = RELAY_STREAM_FROM_GUEST;
        d.ops = &st_ops;
        d.endpoint_fd = endpoint;
        assert_int_equal(relay_listen(r, &tr, 1041, RELAY_LISTEN_ONCE, on_accept_restored, &d, &d.l), 0);
        spawn_guest((const char *[]){ "send-hdr", path, "3145728", "13", NULL }, -1, -1, &guest);
        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.at_done.rx_guest, total);
        assert_int_equal(t.at_done.tx_endpoint, total);
        snprintf(want, sizeof(want), "offset %" PRIu64 "\n", already);
        assert_int_equal(child_finish(&guest, out, sizeof(out)), 0);
        assert_string_equal(out, want);
        t.s = relay_stream_free(t.s);
        run_until(r, &k.closed);
        assert_int_equal(k.bytes, total - already);
        assert_int_equal(k.hash, guest_data_hash_range(13, already, total));
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

struct stdin_resume {
        struct st *st;
        int endpoint_fd;
        struct relay_listener *l;
};

static void on_accept_stdin_resumed(struct relay_listener *l, int fd, void *userdata)
{
        struct stdin_resume *d = userdata;
        struct relay_stream_counters seed = { .rx_endpoint = 5000, .tx_guest = 5000 };

        assert_true(fd >= 0);
        assert_int_equal(relay_stream_new_at(d->st->r, RELAY_STREAM_TO_GUEST, fd, d->endpoint_fd, &st_ops, &seed, true,
                                             d->st, &d->st->s),
                         0);
        relay_stream_set_label(d->st->s, "stdin resume");
}

/* stdin after a restore: the guest says how much it has; the rest of the host's input follows.
 * want_event: what the owner is told of the guest's count (-1: nothing). */
static void stdin_resume(const char *guest_has, int want_error, int want_event)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 400000;
        struct st t = {};
        struct stdin_resume d = { .st = &t };
        struct relay_transport tr = { .kind = RELAY_TRANSPORT_HVSOCK };
        struct events_seen e;
        struct child guest, source;
        char dir[64], path[128], n[32];
        int p[2];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        events_listen(r, &e);
        t.r = r;
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        num(n, sizeof(n), total);
        spawn_guest((const char *[]){ "source", n, "14", NULL }, -1, p[1], &source);
        close(p[1]);
        d.endpoint_fd = p[0];
        snprintf(tr.uds_path, sizeof(tr.uds_path), "%s/vm.vsock", dir);
        assert_int_equal(relay_transport_hvsock_path(&tr, 1042, path, sizeof(path)), 0);
        assert_int_equal(relay_listen(r, &tr, 1042, RELAY_LISTEN_ONCE, on_accept_stdin_resumed, &d, &d.l), 0);
        spawn_guest((const char *[]){ "recv-hdr", path, guest_has, NULL }, -1, -1, &guest);
        run_until(r, &t.done);
        assert_int_equal(t.error, want_error);
        for (int k = 0; k < _RELAY_EVENT_KIND_MAX; k++)
                assert_int_equal(e.count[k], k == want_event);
        if (want_event >= 0) {
                assert_string_equal(e.label[want_event], "stdin resume");
                assert_int_equal(e.last[want_event].bytes, want_event == RELAY_EVENT_STDIN_LOST ? 1000 : 9000);
                assert_int_equal(e.last[want_event].sent, want_event == RELAY_EVENT_STDIN_LOST ? 0 : 5000);
        }
        if (want_error == 0) {
                assert_int_equal(t.at_done.tx_guest, 5000 + total);
                expect_output(&guest, total, guest_data_hash(14, total));
        } else {
                /* the guest waits for input until its connection goes */
                t.s = relay_stream_free(t.s);
                run_idle(r, 3);
                (void)child_finish(&guest, NULL, 0);
        }
        t.s = relay_stream_free(t.s);
        run_idle(r, 3);
        (void)child_finish(&source, NULL, 0);
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

static void test_stream_stdin_resume_reads_the_guest_count_then_continues(void **state)
{
        stdin_resume("5000", 0, -1);
}

/* What the guest never got cannot be sent again: the owner is told how much, the rest follows. */
static void test_stream_stdin_resume_short_of_what_was_sent_tells_the_loss_then_continues(void **state)
{
        stdin_resume("4000", 0, RELAY_EVENT_STDIN_LOST);
}

static void test_stream_stdin_resume_with_impossible_guest_count_fails(void **state)
{
        stdin_resume("9000", -EPROTO, RELAY_EVENT_STDIN_OVERCLAIMED);
}

static void test_stream_replace_guest_refused_while_running(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct st t = { .r = NULL };
        struct relay_stream *s;
        int g[2], e[2];

        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, e), 0);
        assert_int_equal(relay_stream_new(r, RELAY_STREAM_FROM_GUEST, g[0], e[0], &st_ops, &t, &s), 0);
        assert_int_equal(relay_stream_replace_guest(s, g[1], false), -EBUSY);
        assert_int_equal(relay_stream_resume(s), -EINVAL);
        relay_stream_free(s);
        run_idle(r, 3);
        close(g[1]);
        close(e[1]);
}

/* An ended stream freezes too, with nothing to drain: a new guest that comes while its owner
 * holds the freeze (a save, a live upgrade's hold) joins it frozen, its bytes left in its socket
 * until the resume, not relayed past the owner's counts. */
static void test_stream_ended_freezes_and_a_new_guest_joins_it_frozen(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_stream_counters c;
        struct st t = { .r = NULL };
        int g[2], e[2], g2[2];
        char buf[16];

        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, e), 0);
        assert_int_equal(relay_stream_new(r, RELAY_STREAM_FROM_GUEST, g[0], e[0], &st_ops, &t, &t.s), 0);
        assert_int_equal(write(g[1], "ab", 2), 2);
        close(g[1]);
        run_until(r, &t.done);
        assert_int_equal(t.error, 0);

        assert_int_equal(relay_stream_freeze(t.s), 0);
        assert_int_equal(relay_stream_freeze(t.s), -EALREADY);
        run_until(r, &t.frozen);
        assert_int_equal(t.frozen_calls, 1);
        assert_int_equal(t.at_frozen.rx_guest, 2);

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g2), 0);
        assert_int_equal(relay_stream_replace_guest(t.s, g2[0], false), 0);
        assert_int_equal(write(g2[1], "cd", 2), 2);
        run_idle(r, 20);
        relay_stream_get_counters(t.s, &c);
        assert_int_equal(c.rx_guest, 2);
        assert_int_equal(t.dones, 1);

        assert_int_equal(relay_stream_resume(t.s), 0);
        close(g2[1]);
        t.done = false;
        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.at_done.rx_guest, 4);
        assert_int_equal(t.at_done.tx_endpoint, 4);
        assert_int_equal(recv(e[1], buf, sizeof(buf), MSG_DONTWAIT), 4);
        assert_memory_equal(buf, "abcd", 4);
        t.s = relay_stream_free(t.s);
        run_idle(r, 3);
        close(e[1]);
}

static bool fd_is_open(int fd)
{
        return fcntl(fd, F_GETFD) >= 0;
}

/* A redial the stream refuses (not a socket; an endpoint that failed) is closed, not leaked: only
 * -EBUSY leaves the fd the caller's. */
static void test_stream_replace_guest_refused_closes_the_new_connection(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct st t = { .r = NULL };
        int g[2], e[2], g2[2], p[2];

        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, e), 0);
        assert_int_equal(relay_stream_new(r, RELAY_STREAM_FROM_GUEST, g[0], e[0], &st_ops, &t, &t.s), 0);
        assert_int_equal(relay_stream_freeze(t.s), 0);
        run_until(r, &t.frozen);

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(relay_stream_replace_guest(t.s, p[0], false), -ENOTSOCK);
        assert_false(fd_is_open(p[0]));
        close(p[1]);

        /* The endpoint's reader goes: the next write fails it for good. */
        assert_int_equal(relay_stream_resume(t.s), 0);
        close(e[1]);
        assert_int_equal(write(g[1], "x", 1), 1);
        close(g[1]);
        run_until(r, &t.done);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, g2), 0);
        assert_int_equal(relay_stream_replace_guest(t.s, g2[0], false), -ESTALE);
        assert_false(fd_is_open(g2[0]));
        close(g2[1]);
        t.s = relay_stream_free(t.s);
        run_idle(r, 3);
}

static void test_stream_discard_endpoint_counts_and_taps(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 5 * MIB + 3;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_tap_ops, .endpoint_fd = -1 };
        struct relay_stream_counters seed = { .rx_guest = 1000, .tx_endpoint = 1000 };
        struct child guest;
        char dir[64], path[128], n[32];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        t.tap_hash = GUEST_HASH_INIT;
        listen_for(r, dir, 1050, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        num(n, sizeof(n), total);
        spawn_guest((const char *[]){ "send", path, n, "11", NULL }, -1, -1, &guest);
        run_until(r, &d.accepted);
        /* a restored stream continues its counters */
        relay_stream_seed_counters(t.s, &seed);
        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.tap_bytes, total);
        assert_int_equal(t.tap_hash, guest_data_hash(11, total));
        assert_int_equal(t.at_done.rx_guest, 1000 + total);
        assert_int_equal(t.at_done.tx_endpoint, 1000 + total);
        assert_int_equal(child_finish(&guest, NULL, 0), 0);
        t.s = relay_stream_free(t.s);
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

/* ---- the splice path (splice.c) ---- */

struct tap_switch {
        struct st st;
        uint64_t tap_from;            /* the guest byte count from which taps are wanted; UINT64_MAX never */
        uint64_t delivered_at_switch; /* tx_endpoint when taps were first wanted; UINT64_MAX not yet */
};

static bool tap_switch_wanted(struct relay_stream *s, void *userdata)
{
        struct tap_switch *ts = userdata;
        struct relay_stream_counters c;

        relay_stream_get_counters(s, &c);
        if (c.rx_guest < ts->tap_from)
                return false;
        if (ts->delivered_at_switch == UINT64_MAX)
                ts->delivered_at_switch = c.tx_endpoint;
        return true;
}

/* Like the daemon's tap: the ring calls it for every byte it delivers; it keeps what is wanted. */
static void tap_switch_tap(struct relay_stream *s, const void *data, size_t len, void *userdata)
{
        if (tap_switch_wanted(s, userdata))
                on_tap(s, data, len, userdata);
}

static const struct relay_stream_ops st_tap_switch_ops = {
        .on_done = on_done,
        .on_frozen = on_frozen,
        .on_tap = tap_switch_tap,
        .tap_wanted = tap_switch_wanted,
};

/* A bulk guest into a socket endpoint: relay_config_default's threshold (a read that filled its
 * buffer) puts the stream on the splice path; every byte arrives once, the counters are exact,
 * and once the stream is idle no pipe is lent. */
static void splice_bulk_to_socket(const struct relay_stream_ops *ops, uint64_t tap_from, uint32_t port,
                                  struct relay_stats *ret_stats, struct tap_switch *ret_ts)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 32 * MIB, seed = 21;
        struct tap_switch ts = { .tap_from = tap_from, .delivered_at_switch = UINT64_MAX };
        struct dial d = { .st = &ts.st, .dir = RELAY_STREAM_FROM_GUEST, .ops = ops };
        struct child guest;
        struct sink k;
        char dir[64], path[128], n[32], sd[32];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        ts.st.r = r;
        ts.st.tap_hash = GUEST_HASH_INIT;
        d.endpoint_fd = sink_open(r, &k);
        listen_for(r, dir, port, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        num(n, sizeof(n), total);
        num(sd, sizeof(sd), seed);
        spawn_guest((const char *[]){ "send", path, n, sd, "65536", NULL }, -1, -1, &guest);
        run_until(r, &ts.st.done);
        assert_int_equal(ts.st.error, 0);
        assert_int_equal(ts.st.at_done.rx_guest, total);
        assert_int_equal(ts.st.at_done.tx_endpoint, total);
        relay_get_stats(r, ret_stats);
        assert_int_equal(ret_stats->splice_pipes_lent, 0);
        assert_int_equal(child_finish(&guest, NULL, 0), 0);
        ts.st.s = relay_stream_free(ts.st.s);
        run_until(r, &k.closed);
        assert_int_equal(k.bytes, total);
        assert_int_equal(k.hash, guest_data_hash(seed, total));
        /* the tap, when it was wanted, saw a tail of the stream, exactly */
        if (ts.st.tap_bytes > 0)
                assert_int_equal(ts.st.tap_hash, guest_data_hash_range(seed, total - ts.st.tap_bytes, total));
        relay_listener_free(d.l);
        rm_tmpdir(dir);
        *ret_ts = ts;
}

static void test_stream_splice_bulk_to_a_socket_moves_by_splice_and_returns_its_pipe(void **state)
{
        struct relay_stats st;
        struct tap_switch ts;

        splice_bulk_to_socket(&st_ops, UINT64_MAX, 1100, &st, &ts);
        assert_true(st.bytes_spliced >= 16 * MIB); /* most of it: only the first reads use the ring */
        assert_true(st.splice_pipes >= 1 && st.splice_pipes <= RELAY_SPLICE_PIPES_DEFAULT);
}

/* A tap with no tap_wanted means "always": such a stream never leaves the ring. */
static void test_stream_splice_never_for_a_stream_tapped_for_good(void **state)
{
        struct relay_stats st;
        struct tap_switch ts;

        splice_bulk_to_socket(&st_tap_ops, 0, 1101, &st, &ts);
        assert_int_equal(st.bytes_spliced, 0);
        assert_int_equal(ts.st.tap_bytes, 32 * MIB);
}

/* Nobody taps for the first 8 MiB (spliced), then somebody does: from then on every byte the guest
 * sends reaches the tap too (the ring again), which the tail hash in splice_bulk_to_socket checks. */
static void test_stream_splice_gives_way_when_a_tap_is_wanted(void **state)
{
        struct relay_stats st;
        struct tap_switch ts;

        splice_bulk_to_socket(&st_tap_switch_ops, 8 * MIB, 1102, &st, &ts);
        assert_true(st.bytes_spliced > 0);
        /* what was in flight when the tap came may have gone untapped: at most a pipe's worth */
        assert_true(ts.st.tap_bytes >= 24 * MIB - MIB);
        /* The ring taps at delivery, so bytes read before the relay saw the switch and delivered
         * after it are tapped too; none delivered before it ever is. */
        assert_true(ts.st.tap_bytes <= 32 * MIB - ts.delivered_at_switch);
}

/* 32 MiB from a guest into a fifo endpoint on r, in dir: every byte arrives once, in order. */
static void splice_into_a_fifo(struct relay *r, const char *dir, uint32_t port, uint64_t seed)
{
        const uint64_t total = 32 * MIB;
        struct st t = { .r = r };
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct child guest, sink;
        char path[128], n[32], sd[32];
        int p[2];

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        spawn_guest((const char *[]){ "sink", NULL }, p[0], -1, &sink);
        close(p[0]);
        d.endpoint_fd = p[1];
        listen_for(r, dir, port, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        num(n, sizeof(n), total);
        num(sd, sizeof(sd), seed);
        spawn_guest((const char *[]){ "send", path, n, sd, "65536", NULL }, -1, -1, &guest);
        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.at_done.tx_endpoint, total);
        assert_int_equal(child_finish(&guest, NULL, 0), 0);
        t.s = relay_stream_free(t.s);
        expect_output(&sink, total, guest_data_hash(seed, total));
        relay_listener_free(d.l);
}

/* Takes into k's tally what the far end fd of a socket endpoint has ready now, without waiting. */
static void sink_read_ready(int fd, struct sink *k)
{
        static char scratch[65536];
        ssize_t got;

        while ((got = recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT)) > 0) {
                k->bytes += (uint64_t)got;
                k->hash = guest_hash(k->hash, scratch, (size_t)got);
        }
}

/* A stream whose socket endpoint (its far end fd) was not read for a while: reading it now brings
 * every byte of the guest's, once and in order, and the stream to its end. */
static void stalled_resume_and_check(struct relay *r, struct st *t, struct sink *k, int fd, uint64_t total,
                                     uint64_t seed, struct child *guest)
{
        assert_int_equal(relay_chan_new(r, fd, &sink_ops, NULL, k, &k->c), 0);
        run_until(r, &t->done);
        assert_int_equal(t->error, 0);
        t->s = relay_stream_free(t->s);
        run_until(r, &k->closed);
        assert_int_equal(k->bytes, total);
        assert_int_equal(k->hash, guest_data_hash(seed, total));
        assert_int_equal(child_finish(guest, NULL, 0), 0);
}

/* A fifo endpoint splices through a pipe of ours while the pool has one. */
static void test_stream_splice_into_a_fifo_through_a_pipe(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_stats st;
        char dir[64];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        splice_into_a_fifo(r, dir, 1103, 22);
        relay_get_stats(r, &st);
        assert_true(st.bytes_spliced >= 16 * MIB);
        assert_true(st.splice_pipes >= 1);
        assert_int_equal(st.splice_pipes_lent, 0);
        rm_tmpdir(dir);
}

/* Every pipe lent (to a stream whose socket endpoint nobody reads): a fifo endpoint still splices,
 * straight from the guest's socket, and copies nothing past its first reads. */
static void test_stream_splice_into_a_fifo_straight_when_every_pipe_is_lent(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t stalled_total = 8 * MIB;
        struct relay_config cfg;
        struct relay_stats st = {}, before;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct child guest;
        struct sink k = { .hash = GUEST_HASH_INIT };
        char dir[64], path[128], n[32];
        int sv[2];

        relay_config_default(&cfg);
        cfg.splice_min = 1;
        cfg.splice_pipes = cfg.splice_pipes_max = 1;
        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(&cfg, &r), 0);
        t.r = r;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        d.endpoint_fd = sv[0];
        listen_for(r, dir, 1104, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        num(n, sizeof(n), stalled_total);
        spawn_guest((const char *[]){ "send", path, n, "25", "65536", NULL }, -1, -1, &guest);
        /* sv[1] is read until the relay splices (ring bytes would keep it off the path while they
         * wait), then never: the stream's pipe holds what the full socket cannot take */
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; st.bytes_spliced == 0 || st.splice_pipes_lent == 0;) {
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                relay_get_stats(r, &st);
                if (st.bytes_spliced == 0)
                        sink_read_ready(sv[1], &k);
        }
        before = st;
        splice_into_a_fifo(r, dir, 1105, 26);
        relay_get_stats(r, &st);
        assert_int_equal(st.splice_pipes, 1);
        assert_int_equal(st.splice_pipes_lent, 1); /* the stalled stream's, all along */
        assert_true(st.bytes_spliced - before.bytes_spliced >= 31 * MIB);
        stalled_resume_and_check(r, &t, &k, sv[1], stalled_total, 25, &guest);
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

/* Four bulk streams at once on r, in dir: every byte arrives once, in order; ret_peak: the most
 * pipes the pool held at any time. */
static void splice_four_bulk_streams_on(struct relay *r, const char *dir, struct relay_stats *ret_st,
                                        unsigned *ret_peak)
{
        enum { N = 4 };
        const uint64_t total = 8 * MIB;
        struct relay_stats st;
        struct st t[N] = {};
        struct dial d[N];
        struct child guest[N];
        struct sink k[N];
        char path[128], n[32], sd[32];
        unsigned done = 0, peak = 0;

        num(n, sizeof(n), total);
        for (unsigned i = 0; i < N; i++) {
                t[i].r = r;
                d[i] = (struct dial){ .st = &t[i], .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
                d[i].endpoint_fd = sink_open(r, &k[i]);
                listen_for(r, dir, 1110 + i, RELAY_LISTEN_ONCE, &d[i], path, sizeof(path));
                num(sd, sizeof(sd), 30 + i);
                spawn_guest((const char *[]){ "send", path, n, sd, "65536", NULL }, -1, -1, &guest[i]);
        }
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; done < N;) {
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                relay_get_stats(r, &st);
                peak = MAX(peak, st.splice_pipes);
                done = 0;
                for (unsigned i = 0; i < N; i++)
                        done += t[i].done;
        }
        for (unsigned i = 0; i < N; i++) {
                assert_int_equal(t[i].error, 0);
                assert_int_equal(t[i].at_done.tx_endpoint, total);
                assert_int_equal(child_finish(&guest[i], NULL, 0), 0);
                t[i].s = relay_stream_free(t[i].s);
                run_until(r, &k[i].closed);
                assert_int_equal(k[i].bytes, total);
                assert_int_equal(k[i].hash, guest_data_hash(30 + i, total));
        }
        relay_get_stats(r, ret_st);
        for (unsigned i = 0; i < N; i++)
                relay_listener_free(d[i].l);
        *ret_peak = peak;
}

/* The same on a relay of its own whose pool reserves `pipes` and may grow to `pipes_max`. */
static void splice_four_bulk_streams(unsigned pipes, unsigned pipes_max, struct relay_stats *ret_st, unsigned *ret_peak)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_config cfg;
        char dir[64];

        relay_config_default(&cfg);
        cfg.splice_pipes = pipes;
        cfg.splice_pipes_max = pipes_max;
        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(&cfg, &r), 0);
        splice_four_bulk_streams_on(r, dir, ret_st, ret_peak);
        assert_true(*ret_peak <= pipes_max);
        rm_tmpdir(dir);
}

/* A backlog of 100-byte writes, in place before the relay reads: a pipe takes 16 segments, so a
 * splice would move 1,600 bytes where a ring read takes a whole buffer of them. One probing splice
 * finds that out and the stream goes back to the ring for the rest. 8 KiB buffers put the path's
 * threshold (a full read) well under the backlog. */
static void test_stream_splice_gives_way_to_a_backlog_of_small_segments(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const size_t seg = 100, total = 7800 * seg;
        int sndbuf = 4 << 20, gs[2];
        struct st t = { .tap_hash = GUEST_HASH_INIT };
        struct relay_config cfg;
        struct relay_stats st;
        uint8_t buf[100];
        struct sink k;

        if (getenv("VSOCKMUX_RELAY_SPLICE_MIN"))
                skip(); /* a forced threshold of 1 byte: no read is small beside it */
        relay_config_default(&cfg);
        cfg.buf_size = 8192;
        assert_int_equal(relay_new(&cfg, &r), 0);
        t.r = r;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, gs), 0);
        /* The backlog must fit the sender's buffer: each 100-byte write costs about 768 bytes of it. */
        assert_int_equal(setsockopt(gs[0], SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)), 0);
        for (size_t off = 0; off < total; off += seg) {
                guest_data_fill(31, off, buf, seg);
                assert_int_equal(write(gs[0], buf, seg), (ssize_t)seg);
        }
        assert_int_equal(shutdown(gs[0], SHUT_WR), 0);
        assert_int_equal(relay_stream_new(r, RELAY_STREAM_FROM_GUEST, gs[1], sink_open(r, &k), &st_ops, &t, &t.s), 0);
        run_until(r, &t.done);
        assert_int_equal(t.error, 0);
        assert_int_equal(t.at_done.tx_endpoint, total);
        relay_get_stats(r, &st);
        assert_true(st.bytes_spliced > 0);         /* it did try the path once... */
        assert_true(st.bytes_spliced <= 16 * seg); /* ...and left it after that splice */
        t.s = relay_stream_free(t.s);
        run_until(r, &k.closed);
        assert_int_equal(k.bytes, total);
        assert_int_equal(k.hash, guest_data_hash(31, total));
        safe_close(gs[0]);
}

/* More bulk streams than pipes: the ones that find none stay on the ring, nobody loses a byte. */
static void test_stream_splice_pool_exhausted_falls_back_to_the_ring(void **state)
{
        struct relay_stats st;
        unsigned peak;

        splice_four_bulk_streams(1, 1, &st, &peak);
        assert_int_equal(peak, 1);
        assert_true(st.bytes_spliced > 0);
        assert_true(st.bytes_spliced < st.bytes_relayed); /* some went by the ring */
}

/* One pipe reserved, but fds to spare: the pool lends more than the reserve to the busy streams. */
static void test_stream_splice_pool_grows_on_spare_fds(void **state)
{
        struct relay_stats st;
        unsigned peak;

        splice_four_bulk_streams(1, 4, &st, &peak);
        assert_true(peak > 1);
        assert_true(st.bytes_spliced > 0);
}

/* Borrowed pipes left empty after a burst are closed once a period passes without a loan. */
static void test_stream_splice_pool_closes_idle_borrowed_pipes(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_config cfg;
        struct relay_stats st;
        char dir[64];
        unsigned peak;

        relay_config_default(&cfg);
        cfg.splice_pipes = 1;
        cfg.splice_pipes_max = 4;
        cfg.splice_pipes_idle_ms = 50;
        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(&cfg, &r), 0);
        splice_four_bulk_streams_on(r, dir, &st, &peak);
        assert_true(peak > 1);
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; st.splice_pipes > 1;) {
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                relay_get_stats(r, &st);
        }
        assert_int_equal(st.splice_pipes, 1); /* the reserve stays */
        rm_tmpdir(dir);
}

/* Pipes over the reserve live on fds the streams do not hold: as listeners take those, the pool
 * closes its borrowed pipes. In a child: it lowers its open-file limit for good. */
static void trim_child(void)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        /* 32 stream slots past the headroom and the one reserved pipe: 4 of them kept clear. */
        const struct rlimit rl = { .rlim_cur = RELAY_FD_HEADROOM + 2 * (32 + 1),
                                   .rlim_max = RELAY_FD_HEADROOM + 2 * (32 + 1) };
        enum { L = 28 };
        struct dial d[L] = {};
        struct st t = {};
        struct relay_config cfg;
        struct relay_stats st;
        char dir[64], path[128];
        unsigned peak;

        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
        relay_config_default(&cfg);
        cfg.splice_pipes = 1;
        cfg.splice_pipes_max = 8;
        cfg.splice_pipes_idle_ms = 600 * 1000; /* only the listeners close them here */
        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(&cfg, &r), 0);
        assert_int_equal(relay_stream_capacity(r), 32);
        splice_four_bulk_streams_on(r, dir, &st, &peak);
        assert_true(peak > 1);
        assert_int_equal(st.splice_pipes, peak); /* idle, kept for the next loan */
        t.r = r;
        for (unsigned i = 0; i < L; i++) {
                d[i] = (struct dial){ .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
                listen_for(r, dir, 1200 + i, RELAY_LISTEN_ONCE, &d[i], path, sizeof(path));
        }
        relay_get_stats(r, &st);
        assert_int_equal(st.splice_pipes, 1); /* 28 listeners + 4 kept clear: no spare slot */
        for (unsigned i = 0; i < L; i++)
                relay_listener_free(d[i].l);
        rm_tmpdir(dir);
        r = relay_free(r);
        _exit(0);
}

static void test_stream_splice_pool_gives_borrowed_pipes_back_as_listeners_come(void **state)
{
        pid_t pid = fork();
        int status;

        assert_true(pid >= 0);
        if (pid == 0)
                trim_child(); /* an assertion failing there ends the child with a failure */
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
}

/* An endpoint socket that closes mid-splice: the stream keeps reading the guest and drops its
 * output (as on the ring), reports -EPIPE at the guest's end, and the counters say what was lost. */
static void test_stream_splice_endpoint_closing_drops_and_counts(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 16 * MIB;
        struct relay_stats st;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct relay_stream_counters c = {};
        struct child guest;
        char dir[64], path[128], n[32];
        int sv[2];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        d.endpoint_fd = sv[0];
        listen_for(r, dir, 1120, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        num(n, sizeof(n), total);
        spawn_guest((const char *[]){ "send", path, n, "23", "65536", NULL }, -1, -1, &guest);
        /* sv[1] is read until the relay splices, then no more: it fills, the relay waits */
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS;;) {
                static char scratch[65536];

                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                relay_get_stats(r, &st);
                if (st.bytes_spliced > 0)
                        break;
                while (recv(sv[1], scratch, sizeof(scratch), MSG_DONTWAIT) > 0)
                        ;
        }
        for (int i = 0; i < 20; i++)
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
        relay_stream_get_counters(t.s, &c);
        assert_true(c.rx_guest < total);
        close(sv[1]);
        run_until(r, &t.done);
        assert_int_equal(t.error, -EPIPE);
        assert_int_equal(t.at_done.rx_guest, total); /* the guest was never blocked for good */
        assert_true(t.at_done.tx_endpoint < total);
        relay_get_stats(r, &st);
        assert_int_equal(st.splice_pipes_lent, 0);
        assert_int_equal(child_finish(&guest, NULL, 0), 0);
        t.s = relay_stream_free(t.s);
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

/* A stalled socket endpoint on the splice path: what the relay holds stays under the cap. */
static void test_stream_splice_stalled_sink_holds_at_most_the_cap(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        const uint64_t total = 8 * MIB;
        struct relay_config cfg;
        struct relay_stats st = {};
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_ops };
        struct child guest;
        struct sink k = { .hash = GUEST_HASH_INIT };
        char dir[64], path[128], n[32];
        size_t max_held = 0;
        int sv[2];

        relay_config_default(&cfg);
        /* from the first read: the ring's own cap would stall the stream before any full read */
        cfg.splice_min = 1;
        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(&cfg, &r), 0);
        t.r = r;
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        d.endpoint_fd = sv[0];
        listen_for(r, dir, 1121, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        num(n, sizeof(n), total);
        spawn_guest((const char *[]){ "send", path, n, "24", "65536", NULL }, -1, -1, &guest);
        /* sv[1] is read (into the sink's tally) until the relay splices, then not for a while */
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; st.bytes_spliced == 0 || max_held == 0;) {
                size_t b;

                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                relay_get_stats(r, &st);
                if (t.s) {
                        relay_stream_get_held(t.s, &b, NULL);
                        max_held = MAX(max_held, b);
                }
                if (st.bytes_spliced == 0)
                        sink_read_ready(sv[1], &k);
        }
        /* the endpoint is full and stays so for a while: the relay holds bytes, never too many */
        for (int i = 0; i < 50; i++) {
                size_t b;

                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                relay_stream_get_held(t.s, &b, NULL);
                max_held = MAX(max_held, b);
        }
        assert_true(max_held <= (size_t)cfg.stream_max_bufs * cfg.buf_size);
        stalled_resume_and_check(r, &t, &k, sv[1], total, 24, &guest);
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

static void test_stream_free_with_io_in_flight_is_safe(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct st t = {};
        struct dial d = { .st = &t, .dir = RELAY_STREAM_FROM_GUEST, .ops = &st_tap_ops };
        struct relay_stream_counters c = {};
        struct relay_stats stats;
        struct child guest;
        struct sink k;
        char dir[64], path[128];

        make_tmpdir(dir, sizeof(dir));
        assert_int_equal(relay_new(NULL, &r), 0);
        t.r = r;
        t.tap_hash = GUEST_HASH_INIT;
        d.endpoint_fd = sink_open(r, &k);
        listen_for(r, dir, 1060, RELAY_LISTEN_ONCE, &d, path, sizeof(path));
        spawn_guest((const char *[]){ "send", path, "100000000000", "12", NULL }, -1, -1, &guest);
        for (uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS; c.rx_guest < MIB;) {
                assert_int_equal(relay_run_once(r, 10 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
                if (t.s)
                        relay_stream_get_counters(t.s, &c);
        }
        t.s = relay_stream_free(t.s);
        run_until(r, &k.closed);
        run_idle(r, 5);
        assert_int_equal(t.dones, 0);
        relay_get_stats(r, &stats);
        assert_int_equal(stats.streams, 0);
        assert_int_equal(stats.pool_bufs_in_use, 0);
        run_idle(r, 3);
        assert_int_not_equal(child_finish(&guest, NULL, 0), 0);
        relay_listener_free(d.l);
        rm_tmpdir(dir);
}

/* ---- a source's end right behind its last bytes ---- */

/* The last bytes and the end reach the socket before the loop next runs. relay/ then has two
 * requests that may each see the end: the multishot receive, and the poll it arms for the source's
 * end once bytes came (stream.c: the receive of a 6.18 kernel can miss it under load, which no
 * test here can make happen at will; bench B3 with splicing off showed it). Whichever sees it
 * first, the stream must end once, with every byte. Both directions, close and half-close. */
static void end_behind_last_bytes(enum relay_stream_dir dir, bool close_src)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        static const char bytes[123] = "the last line before the end";

        assert_int_equal(relay_new(NULL, &r), 0);
        for (unsigned round = 0; round < 16; round++) {
                struct st t = { .r = r, .free_on_done = true };
                struct sink k;
                int sv[2], far;

                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
                far = sink_open(r, &k);
                /* stdin: the source is the endpoint, here a socket too */
                assert_int_equal(relay_stream_new(r, dir, dir == RELAY_STREAM_FROM_GUEST ? sv[0] : far,
                                                  dir == RELAY_STREAM_FROM_GUEST ? far : sv[0], &st_ops, &t, &t.s),
                                 0);
                run_idle(r, 3); /* the receive waits */
                /* the first bytes arm the end's poll; the last come with the end */
                assert_int_equal(write(sv[1], bytes, 23), 23);
                run_idle(r, 3);
                assert_int_equal(write(sv[1], bytes + 23, sizeof(bytes) - 23), (ssize_t)(sizeof(bytes) - 23));
                assert_int_equal(close_src ? close(sv[1]) : shutdown(sv[1], SHUT_WR), 0);
                run_until(r, &t.done);
                assert_int_equal(t.dones, 1);
                assert_int_equal(t.error, 0);
                if (dir == RELAY_STREAM_FROM_GUEST) {
                        assert_int_equal(t.at_done.rx_guest, sizeof(bytes));
                        assert_int_equal(t.at_done.tx_endpoint, sizeof(bytes));
                } else {
                        assert_int_equal(t.at_done.rx_endpoint, sizeof(bytes));
                        assert_int_equal(t.at_done.tx_guest, sizeof(bytes));
                }
                if (!close_src)
                        close(sv[1]);
                run_until(r, &k.closed);
                assert_int_equal(k.bytes, sizeof(bytes));
        }
}

static void test_stream_guest_output_ends_when_its_end_comes_with_its_last_bytes(void **state)
{
        end_behind_last_bytes(RELAY_STREAM_FROM_GUEST, true);
        end_behind_last_bytes(RELAY_STREAM_FROM_GUEST, false);
}

static void test_stream_socket_stdin_ends_when_its_end_comes_with_its_last_bytes(void **state)
{
        end_behind_last_bytes(RELAY_STREAM_TO_GUEST, true);
        end_behind_last_bytes(RELAY_STREAM_TO_GUEST, false);
}

int main(int argc, char **argv)
{
        test_skip_without_io_uring();
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stream_64mib_from_guest_arrives_intact_through_a_pipe),
                cmocka_unit_test(test_stream_bulk_traffic_touches_only_a_few_pool_buffers),
                cmocka_unit_test(test_stream_stdin_eof_half_closes_the_guest),
                cmocka_unit_test(test_stream_stdin_eof_confirmed_by_the_guest_then_closed),
                cmocka_unit_test(test_stream_stdin_eof_a_guest_that_never_confirms_holds_only_its_fd),
                cmocka_unit_test(test_stream_stdin_eof_confirmed_short_is_told_then_closed),
                cmocka_unit_test(test_stream_stdin_fifo_writer_close_half_closes_the_guest),
                cmocka_unit_test(test_stream_stdin_from_regular_file_reaches_guest),
                cmocka_unit_test(test_stream_stalled_sink_holds_at_most_the_cap_and_loses_nothing),
                cmocka_unit_test(test_stream_stalled_sink_with_chatty_guest_keeps_buffers_bounded),
                cmocka_unit_test(test_stream_small_pool_shared_by_many_streams_loses_nothing),
                cmocka_unit_test(test_stream_thousand_concurrent_streams_each_arrive_intact),
                cmocka_unit_test(test_stream_guest_dropping_stdin_ends_only_that_stream),
                cmocka_unit_test(test_stream_guest_hanging_up_on_quiet_stdin_ends_the_stream),
                cmocka_unit_test(test_stream_guest_killed_mid_stdout_delivers_everything_it_sent),
                cmocka_unit_test(test_stream_endpoint_closing_early_ends_only_that_stream_with_epipe),
                cmocka_unit_test(test_stream_freeze_flushes_and_resume_loses_nothing),
                cmocka_unit_test(test_stream_freeze_drains_what_the_guest_wrote_before_it),
                cmocka_unit_test(test_stream_release_hands_both_fds_on_and_a_new_stream_loses_nothing),
                cmocka_unit_test(test_stream_replace_guest_sends_offset_then_resumes_exactly_once),
                cmocka_unit_test(test_stream_restored_with_seed_sends_offset_and_continues),
                cmocka_unit_test(test_stream_stdin_resume_reads_the_guest_count_then_continues),
                cmocka_unit_test(test_stream_stdin_resume_short_of_what_was_sent_tells_the_loss_then_continues),
                cmocka_unit_test(test_stream_stdin_resume_with_impossible_guest_count_fails),
                cmocka_unit_test(test_stream_replace_guest_refused_while_running),
                cmocka_unit_test(test_stream_ended_freezes_and_a_new_guest_joins_it_frozen),
                cmocka_unit_test(test_stream_discard_endpoint_counts_and_taps),
                cmocka_unit_test(test_stream_free_with_io_in_flight_is_safe),
                cmocka_unit_test(test_stream_guest_output_ends_when_its_end_comes_with_its_last_bytes),
                cmocka_unit_test(test_stream_socket_stdin_ends_when_its_end_comes_with_its_last_bytes),
                cmocka_unit_test(test_stream_splice_bulk_to_a_socket_moves_by_splice_and_returns_its_pipe),
                cmocka_unit_test(test_stream_splice_never_for_a_stream_tapped_for_good),
                cmocka_unit_test(test_stream_splice_gives_way_when_a_tap_is_wanted),
                cmocka_unit_test(test_stream_splice_into_a_fifo_through_a_pipe),
                cmocka_unit_test(test_stream_splice_into_a_fifo_straight_when_every_pipe_is_lent),
                cmocka_unit_test(test_stream_splice_gives_way_to_a_backlog_of_small_segments),
                cmocka_unit_test(test_stream_splice_pool_exhausted_falls_back_to_the_ring),
                cmocka_unit_test(test_stream_splice_pool_grows_on_spare_fds),
                cmocka_unit_test(test_stream_splice_pool_gives_borrowed_pipes_back_as_listeners_come),
                cmocka_unit_test(test_stream_splice_pool_closes_idle_borrowed_pipes),
                cmocka_unit_test(test_stream_splice_endpoint_closing_drops_and_counts),
                cmocka_unit_test(test_stream_splice_stalled_sink_holds_at_most_the_cap),
                cmocka_unit_test(test_stream_replace_guest_refused_closes_the_new_connection),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
