/* tests/relay/test-stream-ack.c: delivery acks (relay_stream_set_ack) on the real loop: the test plays
 * the guest on its end of a socketpair, writing output and reading the counts the relay sends back. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/io-uring-skip.h"
#include "tests/relay/relay-test.h"
#include "util/macro.h"
#include "util/unaligned.h"

#define KIB 1024u
#define ACK_TEST_BYTES (3u * 1024u * 1024u)

struct ack_st {
        struct relay *r;
        struct relay_stream *s;
        bool done, frozen;
        int error;
};

static void on_done(struct relay_stream *s, int error, void *userdata)
{
        struct ack_st *t = userdata;

        t->done = true;
        t->error = error;
}

static void on_frozen(struct relay_stream *s, void *userdata)
{
        ((struct ack_st *)userdata)->frozen = true;
}

static const struct relay_stream_ops ack_ops = { .on_done = on_done, .on_frozen = on_frozen };

/* The far end of the endpoint: reads what the relay delivered, unless stalled. */
struct sink {
        int fd;
        uint64_t bytes;
        bool stalled;
};

/* What the guest side heard: counts, checked as they come. */
struct guest {
        int fd;
        uint64_t sent;
        uint8_t raw[8];
        unsigned have;
        unsigned acks;
        uint64_t last;
        bool eof;
};

static void guest_write(struct guest *g, uint64_t total)
{
        static uint8_t chunk[16 * KIB];

        while (g->sent < total) {
                ssize_t n = send(g->fd, chunk, (size_t)MIN((uint64_t)sizeof(chunk), total - g->sent), MSG_DONTWAIT);

                if (n <= 0)
                        break;
                g->sent += (uint64_t)n;
        }
}

/* Reads the counts; each is checked against what the endpoint had taken when it was read. */
static void guest_read_acks(struct guest *g, struct relay_stream *s)
{
        uint8_t buf[256];
        ssize_t n;

        while ((n = recv(g->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
                for (ssize_t i = 0; i < n; i++) {
                        struct relay_stream_counters c;
                        uint64_t count;

                        g->raw[g->have++] = buf[i];
                        if (g->have < 8)
                                continue;
                        g->have = 0;
                        count = unaligned_read_le64(g->raw);
                        if (s) {
                                relay_stream_get_counters(s, &c);
                                assert_true(count <= c.tx_endpoint); /* never more than delivered */
                        }
                        assert_true(count <= g->sent);
                        if (g->acks > 0)
                                assert_true(count > g->last); /* each one says more */
                        g->last = count;
                        g->acks++;
                }
        }
        if (n == 0)
                g->eof = true;
}

static void sink_read(struct sink *k)
{
        uint8_t buf[64 * KIB];
        ssize_t n;

        while (!k->stalled && (n = recv(k->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
                k->bytes += (uint64_t)n;
}

static void turn(struct ack_st *t, struct guest *g, struct sink *k, uint64_t total)
{
        guest_write(g, total);
        assert_int_equal(relay_run_once(t->r, 1000 * 1000), 0);
        sink_read(k);
        guest_read_acks(g, t->s);
}

/* A stream between the test's guest end g and a sink k over socketpairs; ring: never spliced;
 * sndbuf > 0: the relay's side of the guest connection sends into that little room. */
static void open_stream_sized(struct ack_st *t, struct guest *g, struct sink *k, bool ring, int sndbuf)
{
        struct relay_config cfg;
        int gs[2], es[2];

        relay_config_default(&cfg);
        cfg.no_splice = ring;
        assert_int_equal(relay_new(&cfg, &t->r), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, gs), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, es), 0);
        if (sndbuf > 0)
                assert_int_equal(setsockopt(gs[1], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
        *g = (struct guest){ .fd = gs[0] };
        *k = (struct sink){ .fd = es[1] };
        assert_int_equal(relay_stream_new(t->r, RELAY_STREAM_FROM_GUEST, gs[1], es[0], &ack_ops, t, &t->s), 0);
}

static void open_stream_on(struct ack_st *t, struct guest *g, struct sink *k, bool ring)
{
        open_stream_sized(t, g, k, ring, 0);
}

static void open_stream(struct ack_st *t, struct guest *g, struct sink *k)
{
        open_stream_on(t, g, k, false);
}

/* relay-stream-ack-splice (VSOCKMUX_RELAY_SPLICE_MIN=1): the bytes really went by splice there. */
static void expect_spliced_when_forced(struct relay *r)
{
        struct relay_stats st;

        if (!getenv("VSOCKMUX_RELAY_SPLICE_MIN"))
                return;
        relay_get_stats(r, &st);
        assert_true(st.bytes_spliced > 0);
}

static void close_stream(struct ack_st *t, struct guest *g, struct sink *k)
{
        t->s = relay_stream_free(t->s);
        run_idle(t->r, 5);
        close(g->fd);
        close(k->fd);
        t->r = relay_free(t->r);
}

static void run_to_the_end(struct ack_st *t, struct guest *g, struct sink *k, uint64_t total)
{
        uint64_t deadline = relay_now_ns(t->r) + TEST_WAIT_NS;

        while (g->sent < total) {
                turn(t, g, k, total);
                assert_true(relay_now_ns(t->r) < deadline);
        }
        assert_int_equal(shutdown(g->fd, SHUT_WR), 0);
        while (!t->done || !g->eof) {
                turn(t, g, k, total);
                assert_true(relay_now_ns(t->r) < deadline);
        }
        assert_int_equal(t->error, 0);
}

static void test_acks_grow_with_delivery_and_end_at_every_byte(void **state)
{
        struct ack_st t = {};
        struct guest g;
        struct sink k;

        open_stream(&t, &g, &k);
        assert_int_equal(relay_stream_set_ack(t.s, true), 0);
        run_to_the_end(&t, &g, &k, ACK_TEST_BYTES);
        /* Coalesced (at most one per 32 KiB, or when idle), and the last says everything. */
        assert_true(g.acks >= 2);
        assert_true(g.acks <= ACK_TEST_BYTES / RELAY_STREAM_ACK_STEP * 2 + 2);
        assert_int_equal(g.last, ACK_TEST_BYTES);
        sink_read(&k);
        assert_int_equal(k.bytes, ACK_TEST_BYTES);
        expect_spliced_when_forced(t.r);
        close_stream(&t, &g, &k);
}

static void test_no_ack_is_sent_unless_asked(void **state)
{
        struct ack_st t = {};
        struct guest g;
        struct sink k;

        open_stream(&t, &g, &k);
        run_to_the_end(&t, &g, &k, ACK_TEST_BYTES);
        assert_int_equal(g.acks, 0);
        assert_int_equal(g.have, 0);
        sink_read(&k);
        assert_int_equal(k.bytes, ACK_TEST_BYTES);
        close_stream(&t, &g, &k);
}

/* A stalled endpoint: the relay reads up to its cap (on the ring: pool buffers), but acks only
 * what the endpoint took. */
static void test_acks_stop_at_what_a_stalled_endpoint_took(void **state)
{
        struct ack_st t = {};
        struct relay_stream_counters c;
        struct guest g;
        struct sink k;
        size_t held = 0;

        open_stream_on(&t, &g, &k, true);
        k.stalled = true;
        assert_int_equal(relay_stream_set_ack(t.s, true), 0);
        for (uint64_t deadline = relay_now_ns(t.r) + TEST_WAIT_NS; held < 256 * KIB;) {
                turn(&t, &g, &k, ACK_TEST_BYTES);
                relay_stream_get_held(t.s, &held, NULL);
                assert_true(relay_now_ns(t.r) < deadline);
        }
        run_idle(t.r, 20);
        guest_read_acks(&g, t.s);
        relay_stream_get_counters(t.s, &c);
        relay_stream_get_held(t.s, &held, NULL);
        assert_true(c.rx_guest >= c.tx_endpoint + held);
        assert_true(g.last + held <= c.rx_guest);
        assert_true(c.tx_endpoint - g.last < RELAY_STREAM_ACK_STEP);
        /* Once the endpoint takes the rest, the count goes on to the end. */
        k.stalled = false;
        run_to_the_end(&t, &g, &k, ACK_TEST_BYTES);
        assert_int_equal(g.last, ACK_TEST_BYTES);
        close_stream(&t, &g, &k);
}

/* A freeze flushes and waits for the ack in flight; the next connection hears the resume header and
 * right after it the delivered count. */
static void test_a_new_connection_hears_the_count_after_the_header(void **state)
{
        struct ack_st t = {};
        struct relay_stream_counters c;
        struct guest g, g2;
        struct sink k;
        uint8_t hdr[8];
        int gs[2];
        ssize_t n;

        open_stream(&t, &g, &k);
        assert_int_equal(relay_stream_set_ack(t.s, true), 0);
        for (uint64_t deadline = relay_now_ns(t.r) + TEST_WAIT_NS; g.sent < ACK_TEST_BYTES / 2;) {
                turn(&t, &g, &k, ACK_TEST_BYTES / 2);
                assert_true(relay_now_ns(t.r) < deadline);
        }
        assert_int_equal(relay_stream_freeze(t.s), 0);
        while (!t.frozen) {
                assert_int_equal(relay_run_once(t.r, 1000 * 1000), 0);
                sink_read(&k);
        }
        relay_stream_get_counters(t.s, &c);
        assert_int_equal(c.tx_endpoint, c.rx_guest);

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, gs), 0);
        g2 = (struct guest){ .fd = gs[0], .sent = c.rx_guest };
        assert_int_equal(relay_stream_replace_guest(t.s, gs[1], true), 0);
        assert_int_equal(relay_stream_resume(t.s), 0);
        for (size_t have = 0; have < sizeof(hdr); have += (size_t)n) {
                assert_int_equal(relay_run_once(t.r, 1000 * 1000), 0);
                n = recv(g2.fd, hdr + have, sizeof(hdr) - have, MSG_DONTWAIT);
                if (n < 0 && errno == EAGAIN)
                        n = 0;
                assert_true(n >= 0);
        }
        assert_int_equal(unaligned_read_le64(hdr), c.rx_guest);
        for (uint64_t deadline = relay_now_ns(t.r) + TEST_WAIT_NS; g2.acks == 0;) {
                assert_int_equal(relay_run_once(t.r, 1000 * 1000), 0);
                guest_read_acks(&g2, t.s);
                assert_true(relay_now_ns(t.r) < deadline);
        }
        assert_int_equal(g2.last, c.tx_endpoint);
        close(g.fd);
        g = g2;
        run_to_the_end(&t, &g, &k, ACK_TEST_BYTES);
        assert_int_equal(g.last, ACK_TEST_BYTES);
        expect_spliced_when_forced(t.r);
        close_stream(&t, &g, &k);
}

/* A turn of a guest that never reads its counts (a hostile or broken one). */
static void turn_deaf(struct ack_st *t, struct guest *g, struct sink *k, uint64_t total)
{
        guest_write(g, total);
        assert_int_equal(relay_run_once(t->r, 1000 * 1000), 0);
        sink_read(k);
}

/* A guest that agreed to acks but reads none fills its side with them. That must cost it its
 * counts, not hold anyone else: the stream still freezes (a save, an upgrade) and still ends. */
static void test_a_guest_that_reads_no_acks_holds_neither_a_freeze_nor_the_end(void **state)
{
        struct ack_st t = {};
        struct guest g;
        struct sink k;
        uint64_t deadline;

        /* Room for a handful of counts in flight: the rest find the relay's side full. */
        open_stream_sized(&t, &g, &k, true, 4096);
        assert_int_equal(relay_stream_set_ack(t.s, true), 0);
        deadline = relay_now_ns(t.r) + TEST_WAIT_NS;
        while (g.sent < ACK_TEST_BYTES) {
                turn_deaf(&t, &g, &k, ACK_TEST_BYTES);
                assert_true(relay_now_ns(t.r) < deadline);
        }
        assert_int_equal(relay_stream_freeze(t.s), 0);
        while (!t.frozen) {
                turn_deaf(&t, &g, &k, ACK_TEST_BYTES);
                if (relay_now_ns(t.r) >= deadline)
                        fail_msg("the freeze waited on counts the guest never read");
        }
        assert_int_equal(relay_stream_resume(t.s), 0);
        assert_int_equal(shutdown(g.fd, SHUT_WR), 0);
        while (!t.done) {
                turn_deaf(&t, &g, &k, ACK_TEST_BYTES);
                if (relay_now_ns(t.r) >= deadline)
                        fail_msg("the stream's end waited on counts the guest never read");
        }
        assert_int_equal(t.error, 0);
        sink_read(&k);
        assert_int_equal(k.bytes, ACK_TEST_BYTES);
        close_stream(&t, &g, &k);
}

static void test_set_ack_refuses_a_to_guest_stream(void **state)
{
        struct ack_st t = {};
        int gs[2], ep[2];

        assert_int_equal(relay_new(NULL, &t.r), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, gs), 0);
        assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
        assert_int_equal(relay_stream_new(t.r, RELAY_STREAM_TO_GUEST, gs[1], ep[0], &ack_ops, &t, &t.s), 0);
        assert_int_equal(relay_stream_set_ack(t.s, true), -EINVAL);
        t.s = relay_stream_free(t.s);
        run_idle(t.r, 5);
        close(gs[0]);
        close(ep[1]);
        t.r = relay_free(t.r);
}

int main(int argc, char **argv)
{
        test_skip_without_io_uring();
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_acks_grow_with_delivery_and_end_at_every_byte),
                cmocka_unit_test(test_no_ack_is_sent_unless_asked),
                cmocka_unit_test(test_acks_stop_at_what_a_stalled_endpoint_took),
                cmocka_unit_test(test_a_new_connection_hears_the_count_after_the_header),
                cmocka_unit_test(test_a_guest_that_reads_no_acks_holds_neither_a_freeze_nor_the_end),
                cmocka_unit_test(test_set_ack_refuses_a_to_guest_stream),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
