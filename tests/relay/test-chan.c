/* tests/relay/test-chan.c: message channels over real socketpairs on the real loop. */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/relay/relay-test.h"
#include "tests/io-uring-skip.h"
#include "util/unaligned.h"

#define FRAME_HDR 4
#define ECHO_FRAMES 300

struct end {
        struct relay_chan *c;
        unsigned closes;
        int close_error;
        bool closed;
        bool in_abort; /* set while relay_chan_abort runs: on_close must not come then */
        /* client side: what came back */
        uint8_t *got;
        size_t got_len;
        unsigned frames;
};

static void on_close(struct relay_chan *c, int error, void *userdata)
{
        struct end *e = userdata;

        assert_false(e->in_abort);
        e->closes++;
        e->close_error = error;
        e->closed = true;
        e->c = NULL;
}

/* Server: echoes each length-prefixed frame back as one frame built from two pieces. */
static ssize_t on_echo(struct relay_chan *c, const void *data, size_t len, void *userdata)
{
        const uint8_t *p = data;
        uint32_t n;
        struct iovec iov[2];

        if (len < FRAME_HDR)
                return 0;
        n = unaligned_read_le32(p);
        if (len < FRAME_HDR + (size_t)n)
                return 0;
        iov[0] = (struct iovec){ (void *)p, FRAME_HDR };
        iov[1] = (struct iovec){ (void *)(p + FRAME_HDR), n };
        assert_int_equal(relay_chan_sendv(c, iov, 2), 0);
        return FRAME_HDR + n;
}

/* Client: collects whole frames. */
static ssize_t on_collect(struct relay_chan *c, const void *data, size_t len, void *userdata)
{
        struct end *e = userdata;
        const uint8_t *p = data;
        uint32_t n;

        if (len < FRAME_HDR)
                return 0;
        n = unaligned_read_le32(p);
        if (len < FRAME_HDR + (size_t)n)
                return 0;
        memcpy(e->got + e->got_len, p, FRAME_HDR + n);
        e->got_len += FRAME_HDR + n;
        e->frames++;
        return FRAME_HDR + n;
}

static const struct relay_chan_ops echo_ops = { .on_data = on_echo, .on_close = on_close };
static const struct relay_chan_ops collect_ops = { .on_data = on_collect, .on_close = on_close };

static size_t frame_size(unsigned i)
{
        /* small, medium and a few far larger than the socket buffer */
        return (i % 50 == 7) ? 300000 + i : (size_t)(i * 37) % 5000;
}

static void echo_round_trip(int type)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_chan_limits lim = { .max_rx = 1 << 20, .max_tx = 64 << 20, .packet = type == SOCK_SEQPACKET };
        struct end server = {}, client = {};
        uint8_t *sent;
        size_t sent_len = 0, total = 0;
        int sv[2];
        unsigned nframes = type == SOCK_SEQPACKET ? 100 : ECHO_FRAMES;

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
        if (type == SOCK_SEQPACKET) {
                /* keep packets under the socket's per-packet limit */
                lim.max_rx = 200000;
        }
        for (unsigned i = 0; i < nframes; i++)
                total += FRAME_HDR + (type == SOCK_SEQPACKET ? frame_size(i) % 100000 : frame_size(i));
        sent = malloc(total);
        client.got = malloc(total);
        assert_non_null(sent);
        assert_non_null(client.got);

        assert_int_equal(relay_chan_new(r, sv[0], &echo_ops, &lim, &server, &server.c), 0);
        assert_int_equal(relay_chan_new(r, sv[1], &collect_ops, &lim, &client, &client.c), 0);
        for (unsigned i = 0; i < nframes; i++) {
                uint32_t n = (uint32_t)(type == SOCK_SEQPACKET ? frame_size(i) % 100000 : frame_size(i));
                uint8_t *f = sent + sent_len;

                f[0] = n & 0xff;
                f[1] = (n >> 8) & 0xff;
                f[2] = (n >> 16) & 0xff;
                f[3] = (uint8_t)(n >> 24);
                for (uint32_t j = 0; j < n; j++)
                        f[FRAME_HDR + j] = (uint8_t)(i * 131 + j * 7);
                assert_int_equal(relay_chan_send(client.c, f, FRAME_HDR + n), 0);
                sent_len += FRAME_HDR + n;
        }
        run_until_count(r, &client.frames, nframes);
        assert_int_equal(client.got_len, sent_len);
        assert_memory_equal(client.got, sent, sent_len);

        /* closing flushes, the peer sees EOF, each side hears about it exactly once */
        relay_chan_close(client.c);
        run_until(r, &server.closed);
        run_until(r, &client.closed);
        run_idle(r, 3);
        assert_int_equal(server.closes, 1);
        assert_int_equal(server.close_error, 0);
        assert_int_equal(client.closes, 1);
        assert_int_equal(client.close_error, 0);
        free(sent);
        free(client.got);
}

static void test_chan_framed_echo_over_stream_socket(void **state)
{
        echo_round_trip(SOCK_STREAM);
}

static void test_chan_framed_echo_over_seqpacket(void **state)
{
        echo_round_trip(SOCK_SEQPACKET);
}

static ssize_t on_never_consume(struct relay_chan *c, const void *data, size_t len, void *userdata)
{
        return 0;
}

static const struct relay_chan_ops stuck_ops = { .on_data = on_never_consume, .on_close = on_close };

static void test_chan_tx_bound_gives_enobufs(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_chan_limits lim = { .max_rx = 4096, .max_tx = 1000 };
        struct end e = {};
        char buf[600] = {};
        int sv[2];

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(relay_chan_new(r, sv[0], &stuck_ops, &lim, &e, &e.c), 0);
        assert_int_equal(relay_chan_send(e.c, buf, sizeof(buf)), 0);
        assert_int_equal(relay_chan_tx_pending(e.c), sizeof(buf));
        assert_int_equal(relay_chan_send(e.c, buf, sizeof(buf)), -ENOBUFS);
        assert_int_equal(relay_chan_send(e.c, buf, 400), 0);
        assert_int_equal(relay_chan_send(e.c, buf, 1), -ENOBUFS);
        assert_int_equal(relay_chan_send(e.c, buf, 1001), -ENOBUFS);
        relay_chan_close(e.c);
        assert_int_equal(relay_chan_send(e.c, buf, 1), -EPIPE);
        run_until(r, &e.closed);
        assert_int_equal(read(sv[1], buf, sizeof(buf)), 600);
        assert_int_equal(read(sv[1], buf, sizeof(buf)), 400);
        assert_int_equal(read(sv[1], buf, sizeof(buf)), 0);
        close(sv[1]);
}

static void test_chan_peer_eof_closes_once_with_zero(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct end e = {};
        int sv[2];

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(relay_chan_new(r, sv[0], &stuck_ops, NULL, &e, &e.c), 0);
        assert_int_equal(write(sv[1], "abc", 3), 3);
        close(sv[1]);
        run_until(r, &e.closed);
        run_idle(r, 3);
        assert_int_equal(e.closes, 1);
        assert_int_equal(e.close_error, 0);
}

static void test_chan_abort_reports_error_later_and_once(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct end e = {};
        int sv[2];

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(relay_chan_new(r, sv[0], &stuck_ops, NULL, &e, &e.c), 0);
        assert_int_equal(relay_chan_send(e.c, "x", 1), 0);
        e.in_abort = true;
        relay_chan_abort(e.c, -EPROTO);
        relay_chan_abort(e.c, -EIO);
        e.in_abort = false;
        assert_int_equal(e.closes, 0);
        assert_int_equal(relay_chan_send(e.c, "y", 1), -EPIPE);
        run_until(r, &e.closed);
        run_idle(r, 3);
        assert_int_equal(e.closes, 1);
        assert_int_equal(e.close_error, -EPROTO);
        /* The peer sees the end. A send already queued for the ring may still go out (the fd is
         * never closed under a queued request, so a reused fd number can't receive it), but
         * nothing after the abort does. */
        {
                char buf[8];
                ssize_t n, total = 0;

                while ((n = read(sv[1], buf, sizeof(buf))) > 0)
                        total += n;
                assert_int_equal(n, 0);
                assert_true(total <= 1);
        }
        close(sv[1]);
}

static void test_chan_free_stops_callbacks(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct end e = {};
        int sv[2];

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(relay_chan_new(r, sv[0], &stuck_ops, NULL, &e, &e.c), 0);
        run_idle(r, 2);
        close(sv[1]);
        relay_chan_free(e.c);
        run_idle(r, 5);
        assert_int_equal(e.closes, 0);
}

static void test_chan_input_larger_than_max_rx_closes_with_emsgsize(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct relay_chan_limits lim = { .max_rx = 1024 };
        struct end e = {};
        char buf[2048] = {};
        int sv[2];

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(relay_chan_new(r, sv[0], &stuck_ops, &lim, &e, &e.c), 0);
        assert_int_equal(write(sv[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
        run_until(r, &e.closed);
        assert_int_equal(e.close_error, -EMSGSIZE);
        close(sv[1]);
}

static ssize_t on_reject(struct relay_chan *c, const void *data, size_t len, void *userdata)
{
        return -EBADMSG;
}

static const struct relay_chan_ops reject_ops = { .on_data = on_reject, .on_close = on_close };

static void test_chan_on_data_error_closes_with_that_error(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct end e = {};
        int sv[2];

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(relay_chan_new(r, sv[0], &reject_ops, NULL, &e, &e.c), 0);
        assert_int_equal(write(sv[1], "bad", 3), 3);
        run_until(r, &e.closed);
        run_idle(r, 2);
        assert_int_equal(e.closes, 1);
        assert_int_equal(e.close_error, -EBADMSG);
        close(sv[1]);
}

struct self_freeing {
        struct relay_chan *c;
        unsigned calls;
        bool flag;
};

static ssize_t on_data_free_self(struct relay_chan *c, const void *data, size_t len, void *userdata)
{
        struct self_freeing *s = userdata;

        s->calls++;
        s->c = relay_chan_free(c);
        s->flag = true;
        return (ssize_t)len;
}

static void on_close_unexpected(struct relay_chan *c, int error, void *userdata)
{
        fail_msg("on_close after relay_chan_free");
}

static const struct relay_chan_ops self_free_ops = { .on_data = on_data_free_self, .on_close = on_close_unexpected };

static void test_chan_free_inside_on_data_is_safe(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        struct self_freeing s = {};
        int sv[2];

        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(relay_chan_new(r, sv[0], &self_free_ops, NULL, &s, &s.c), 0);
        assert_int_equal(write(sv[1], "hello", 5), 5);
        run_until(r, &s.flag);
        run_idle(r, 3);
        assert_int_equal(s.calls, 1);
        close(sv[1]);
}

/* ---- hold, release, adopt: a live upgrade hands a channel over mid-frame ---- */

static void on_held(struct relay_chan *c, void *userdata)
{
        *(unsigned *)userdata += 1;
}

static void put_frame(uint8_t *f, uint32_t n, uint8_t seed)
{
        f[0] = n & 0xff;
        f[1] = (n >> 8) & 0xff;
        f[2] = (n >> 16) & 0xff;
        f[3] = (uint8_t)(n >> 24);
        for (uint32_t j = 0; j < n; j++)
                f[FRAME_HDR + j] = (uint8_t)(seed + j * 3);
}

static void test_chan_released_mid_frame_and_adopted_loses_and_repeats_nothing(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        uint8_t frames[2][FRAME_HDR + 1000], got[2 * (FRAME_HDR + 1000)], out[16];
        _cleanup_free_ uint8_t *rx = NULL, *tx = NULL;
        size_t rx_len = 0, tx_len = 0;
        struct end a = { .got = got }, b = { .got = got };
        unsigned held = 0;
        int sv[2], fd = -1;

        put_frame(frames[0], 1000, 1);
        put_frame(frames[1], 1000, 2);
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(relay_chan_new(r, sv[0], &collect_ops, NULL, &a, &a.c), 0);
        /* a whole frame and the first 300 bytes of the next */
        assert_int_equal(write(sv[1], frames[0], sizeof(frames[0])), (ssize_t)sizeof(frames[0]));
        assert_int_equal(write(sv[1], frames[1], 300), 300);
        run_until_count(r, &a.frames, 1);
        run_idle(r, 3);
        assert_int_equal(relay_chan_release(a.c, &fd, &rx, &rx_len, &tx, &tx_len), -EBUSY);

        assert_int_equal(relay_chan_hold(a.c, on_held, &held), 0);
        assert_int_equal(relay_chan_hold(a.c, on_held, &held), -EALREADY);
        assert_int_equal(held, 0); /* never inside the call */
        assert_int_equal(relay_chan_send(a.c, "reply", 5), 0);
        run_until_count(r, &held, 1);
        /* held: nothing is sent, nothing more is read or delivered */
        assert_int_equal(write(sv[1], frames[1] + 300, 200), 200);
        run_idle(r, 5);
        assert_int_equal(recv(sv[1], out, sizeof(out), MSG_DONTWAIT), -1);
        assert_int_equal(a.frames, 1);
        assert_int_equal(held, 1);

        assert_int_equal(relay_chan_release(a.c, &fd, &rx, &rx_len, &tx, &tx_len), 0);
        a.c = NULL;
        assert_int_equal(rx_len, 300);
        assert_memory_equal(rx, frames[1], 300);
        assert_int_equal(tx_len, 5);
        assert_memory_equal(tx, "reply", 5);
        run_idle(r, 3);
        assert_false(a.closed); /* released, not closed: no on_close */

        b.got_len = a.got_len;
        assert_int_equal(relay_chan_adopt(r, fd, &collect_ops, NULL, rx, rx_len, tx, tx_len, &b, &b.c), 0);
        assert_int_equal(write(sv[1], frames[1] + 500, sizeof(frames[1]) - 500), (ssize_t)sizeof(frames[1]) - 500);
        run_until_count(r, &b.frames, 1);
        assert_int_equal(b.got_len, sizeof(got));
        assert_memory_equal(got + sizeof(frames[0]), frames[1], sizeof(frames[1]));
        assert_int_equal(read(sv[1], out, sizeof(out)), 5);
        assert_memory_equal(out, "reply", 5);
        relay_chan_close(b.c);
        run_until(r, &b.closed);
        assert_int_equal(b.closes, 1);
        close(sv[1]);
}

static void test_chan_unhold_delivers_what_was_kept_and_goes_on(void **state)
{
        _cleanup_(relay_freep) struct relay *r = NULL;
        uint8_t frames[2][FRAME_HDR + 100], got[2 * (FRAME_HDR + 100)], out[16];
        struct end a = { .got = got };
        unsigned held = 0;
        int sv[2];

        put_frame(frames[0], 100, 5);
        put_frame(frames[1], 100, 6);
        assert_int_equal(relay_new(NULL, &r), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(relay_chan_new(r, sv[0], &collect_ops, NULL, &a, &a.c), 0);
        run_idle(r, 2);
        assert_int_equal(relay_chan_hold(a.c, on_held, &held), 0);
        assert_int_equal(relay_chan_send(a.c, "abc", 3), 0);
        run_until_count(r, &held, 1);
        assert_int_equal(write(sv[1], frames[0], sizeof(frames[0])), (ssize_t)sizeof(frames[0]));
        run_idle(r, 5);
        assert_int_equal(a.frames, 0);
        relay_chan_unhold(a.c);
        run_until_count(r, &a.frames, 1);
        assert_int_equal(write(sv[1], frames[1], sizeof(frames[1])), (ssize_t)sizeof(frames[1]));
        run_until_count(r, &a.frames, 2);
        assert_memory_equal(got, frames, sizeof(got));
        assert_int_equal(read(sv[1], out, sizeof(out)), 3);
        relay_chan_free(a.c);
        close(sv[1]);
}

int main(int argc, char **argv)
{
        test_skip_without_io_uring();
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_chan_framed_echo_over_stream_socket),
                cmocka_unit_test(test_chan_framed_echo_over_seqpacket),
                cmocka_unit_test(test_chan_tx_bound_gives_enobufs),
                cmocka_unit_test(test_chan_peer_eof_closes_once_with_zero),
                cmocka_unit_test(test_chan_abort_reports_error_later_and_once),
                cmocka_unit_test(test_chan_free_stops_callbacks),
                cmocka_unit_test(test_chan_input_larger_than_max_rx_closes_with_emsgsize),
                cmocka_unit_test(test_chan_on_data_error_closes_with_that_error),
                cmocka_unit_test(test_chan_free_inside_on_data_is_safe),
                cmocka_unit_test(test_chan_released_mid_frame_and_adopted_loses_and_repeats_nothing),
                cmocka_unit_test(test_chan_unhold_delivers_what_was_kept_and_goes_on),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
