/* relay/stream.c: one stdio stream: guest socket <-> host endpoint through pool buffers, with backpressure,
 * counters, freeze/resume and guest replacement. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "relay/internal.h"
#include "relay/splice.h"
#include "util/unaligned.h"

/* Gathered writes never take more pieces than this, whatever the cap. */
#define STREAM_IOV_MAX 256u
#define STREAM_LABEL_MAX 64

enum stream_src {
        SRC_RECV_MSHOT, /* sockets: multishot recv into the pool */
        SRC_READ_MSHOT, /* pipes and fifos: IORING_OP_READ_MULTISHOT */
        SRC_READ,       /* files, ttys, or a kernel without READ_MULTISHOT */
};

enum stream_dst {
        DST_SEND,    /* sockets: sendmsg with MSG_NOSIGNAL */
        DST_WRITE,   /* pipes, fifos, files: writev at the file position */
        DST_DISCARD, /* no endpoint: count and tap only */
};

/* A stream's life. Freezing is asked by the owner and may meet an end (a guest that drops during a
 * save): the DONE_ states keep both facts, so on_frozen still follows and a new guest finds the
 * freeze where it was. Every change goes through stream_step(), whose table is the whole story. */
enum stream_state {
        STREAM_RUNNING,  /* relaying */
        STREAM_FREEZING, /* no new reads; on_frozen once nothing is in flight or held */
        STREAM_FROZEN,   /* on_frozen reported; quiet until resume */
        STREAM_DONE,     /* on_done reported; the endpoint, held bytes and counters wait for a new guest */
        STREAM_DONE_FREEZING,
        STREAM_DONE_FROZEN,
        STREAM_FREED, /* the owner let go: completions still land, nothing is reported */
        _STREAM_STATE_MAX,
        _STREAM_STATE_INVALID = -EINVAL,
};

enum stream_event {
        STREAM_END,       /* on_done is about to be reported */
        STREAM_FREEZE,    /* relay_stream_freeze() */
        STREAM_QUIET,     /* a freeze found nothing in flight: on_frozen is about to be reported */
        STREAM_RESUME,    /* relay_stream_resume() */
        STREAM_NEW_GUEST, /* relay_stream_replace_guest() on an ended stream */
        STREAM_FREE,      /* relay_stream_free() */
};

/* How a from-guest stream's bytes move: the ring (pool buffers, copies) or, while the guest has a
 * backlog, the splice path (splice.c). Switching waits until what the ring read is delivered. */
enum stream_path {
        PATH_RING,
        PATH_TO_SPLICE, /* a big read came: no more ring reads; splicing once the ring is quiet */
        PATH_SPLICE,    /* splice.c moves the bytes until its stopped() */
};

/* One request kind's slot: each has at most one request in flight. */
enum op_state {
        OP_IDLE,
        OP_ARMED,
        OP_CANCELLING, /* a cancel is out; the completion without F_MORE still comes */
};

/* The V4 resume header of the current guest connection. */
enum hdr_state {
        HDR_NONE,    /* done, or not asked for */
        HDR_PENDING, /* bytes of it left to send or receive; reads and writes wait */
        HDR_ARMED,   /* a send or recv of it in flight */
};

struct stream_chunk {
        uint32_t bid;
        uint32_t off;
        uint32_t len;
};

struct relay_stream {
        struct relay *r;
        enum relay_stream_dir dir;
        int guest_fd;
        int endpoint_fd;
        const struct relay_stream_ops *ops;
        void *userdata;
        char label[STREAM_LABEL_MAX];

        enum stream_src src;
        enum stream_dst dst;
        enum stream_state state;
        struct relay_op rd_op, wr_op, hdr_op, hup_op, end_op;
        enum op_state rd;
        bool wr_armed;     /* writes are cancelled only by relay_stream_free and a file stdin's freeze */
        bool wr_cancelled; /* a freeze cancelled the write in flight: its -ECANCELED is no error */
        /* stdin only: a poll for the guest hanging up while the endpoint is quiet */
        enum op_state hup;
        unsigned guest_gen, hup_gen; /* a hang-up seen on a replaced guest is stale */
        /* sockets: a poll for the source's end beside the multishot receive (end_watch_arm) */
        enum op_state end_watch;
        unsigned end_gen;
        bool end_seen;  /* for this source: a new receive finds the end by itself */
        bool rd_budget; /* the armed recv carries a byte budget */

        /* held chunks, oldest first; the first wr_n of them are in the write in flight */
        struct stream_chunk *q;
        unsigned q_head, q_n, q_cap;
        size_t held_bytes;
        unsigned wr_n;
        struct iovec *iov;
        unsigned iov_cap;
        struct msghdr msg;

        uint8_t hdr[8];
        unsigned hdr_off;
        enum hdr_state hdr_state;

        struct relay_stream_counters c;

        unsigned ref;
        int error;          /* what on_done reported */
        int src_error;      /* the reading side failed: reported once what was read is flushed */
        bool endpoint_dead; /* writes to the endpoint failed: held bytes can't be delivered */
        int endpoint_error; /* from-guest: why, reported once the guest's output ends */
        bool src_eof;       /* the reading side ended: what it read is still being delivered */
        bool check_queued;
        struct relay_buf_waiter buf_wait;
        /* from-guest, freezing: rx_guest once what the kernel held at the freeze is read */
        uint64_t drain_to;

        enum stream_path path;
        struct relay_splice sp;
        bool splice_dst;       /* the endpoint can take splices: a socket or a fifo */
        bool splice_refused;   /* the kernel said no once: this stream stays on the ring */
        uint64_t splice_after; /* rx_guest: a backlog of small segments keeps the ring until then */

        /* from-guest, relay_stream_set_ack: what reached the endpoint, told back to the guest */
        struct relay_op ack_op;
        uint64_t ack_last;  /* the count in ack_buf: sent, or being sent */
        uint64_t ack_told;  /* the last count the guest was sent whole */
        uint64_t ack_stall; /* with ack_stalled: what had been delivered when a count did not fit */
        uint8_t ack_buf[8]; /* little-endian, like the resume header */
        uint8_t ack_off;    /* bytes of ack_buf sent; a frame is never cut short */
        unsigned ack_gen;   /* guest_gen of the connection the armed send goes to */
        bool ack_on;
        bool ack_armed;   /* at most one send in flight */
        bool ack_due;     /* a new connection hears the count even if it did not change */
        bool ack_failed;  /* the connection refused one: it is going away, try no more */
        bool ack_stalled; /* the guest reads no counts: the next try waits for more delivered */

        /* to-guest, relay_stream_set_eof_confirm: after the half-close, the guest's received count */
        struct relay_op cf_op;
        uint8_t cf_buf[8];
        uint8_t cf_off;
        unsigned cf_gen; /* guest_gen of the connection the armed recv reads */
        bool cf_on;
        bool cf_armed;

        /* to-guest over a regular file: the guest's count puts the file where it left off */
        bool endpoint_seekable;
        bool reposition;  /* the header's count waits for the read in flight to land */
        bool seeded;      /* nothing sent since the counters were seeded */
        bool seed_stale;  /* relay_stream_set_seed_stale: the seed may trail the guest's count */
        bool input_ended; /* relay_stream_end_input: the endpoint closes once what it gave is sent */
        uint64_t guest_count;
};

/* ---- state ---- */

static enum stream_state stream_next(enum stream_state from, enum stream_event ev)
{
        switch (ev) {
        case STREAM_END:
                return from == STREAM_RUNNING    ? STREAM_DONE
                       : from == STREAM_FREEZING ? STREAM_DONE_FREEZING
                       : from == STREAM_FROZEN   ? STREAM_DONE_FROZEN
                                                 : _STREAM_STATE_INVALID;
        case STREAM_FREEZE:
                return from == STREAM_RUNNING ? STREAM_FREEZING
                       : from == STREAM_DONE  ? STREAM_DONE_FREEZING
                                              : _STREAM_STATE_INVALID;
        case STREAM_QUIET:
                return from == STREAM_FREEZING        ? STREAM_FROZEN
                       : from == STREAM_DONE_FREEZING ? STREAM_DONE_FROZEN
                                                      : _STREAM_STATE_INVALID;
        case STREAM_RESUME:
                return from == STREAM_FREEZING || from == STREAM_FROZEN             ? STREAM_RUNNING
                       : from == STREAM_DONE_FREEZING || from == STREAM_DONE_FROZEN ? STREAM_DONE
                                                                                    : _STREAM_STATE_INVALID;
        case STREAM_NEW_GUEST:
                return from == STREAM_DONE            ? STREAM_RUNNING
                       : from == STREAM_DONE_FREEZING ? STREAM_FREEZING
                       : from == STREAM_DONE_FROZEN   ? STREAM_FROZEN
                                                      : _STREAM_STATE_INVALID;
        case STREAM_FREE: return from != STREAM_FREED ? STREAM_FREED : _STREAM_STATE_INVALID;
        }
        return _STREAM_STATE_INVALID;
}

/* Callers check first (the API returns its own -errno): a refused step is a bug in this file. */
static void stream_step(struct relay_stream *s, enum stream_event ev)
{
        enum stream_state to = stream_next(s->state, ev);

        assert(to >= 0);
        s->state = to;
}

static bool stream_is_done(const struct relay_stream *s)
{
        return s->state == STREAM_DONE || s->state == STREAM_DONE_FREEZING || s->state == STREAM_DONE_FROZEN;
}

static bool stream_is_freezing(const struct relay_stream *s)
{
        return s->state == STREAM_FREEZING || s->state == STREAM_DONE_FREEZING;
}

static bool stream_is_frozen(const struct relay_stream *s)
{
        return s->state == STREAM_FROZEN || s->state == STREAM_DONE_FROZEN;
}

static bool stream_is_freed(const struct relay_stream *s)
{
        return s->state == STREAM_FREED;
}

/* ev, named by the stream's label, to the owner of the relay. */
static void stream_tell(struct relay_stream *s, struct relay_event *ev)
{
        ev->label = s->label;
        relay_emit(s->r, ev);
}

static int src_fd(const struct relay_stream *s)
{
        return s->dir == RELAY_STREAM_FROM_GUEST ? s->guest_fd : s->endpoint_fd;
}

static int dst_fd(const struct relay_stream *s)
{
        return s->dir == RELAY_STREAM_FROM_GUEST ? s->endpoint_fd : s->guest_fd;
}

static struct stream_chunk *q_at(struct relay_stream *s, unsigned i)
{
        return &s->q[(s->q_head + i) % s->q_cap];
}

static void q_release_all(struct relay_stream *s)
{
        while (s->q_n > 0) {
                relay_pool_put(s->r, q_at(s, 0)->bid);
                s->q_head = (s->q_head + 1) % s->q_cap;
                s->q_n--;
        }
        s->q_head = 0;
        s->held_bytes = 0;
        s->wr_n = 0;
}

static void stream_unref(struct relay_stream *s)
{
        if (--s->ref > 0)
                return;
        /* Only now may the buffers go back: no write reads them any more. */
        q_release_all(s);
        relay_splice_abort(&s->sp);
        safe_close(s->guest_fd);
        safe_close(s->endpoint_fd);
        free(s->q);
        free(s->iov);
        free(s);
}

static bool guest_is_src(const struct relay_stream *s)
{
        return s->dir == RELAY_STREAM_FROM_GUEST;
}

/* A poll of the stream's own: the slot is armed and holds a reference until it completes. */
static int poll_arm(struct relay_stream *s, int fd, unsigned events, struct relay_op *op, enum op_state *slot)
{
        struct io_uring_sqe *sqe = relay_get_sqe(s->r);

        if (!sqe)
                return -EIO;
        io_uring_prep_poll_add(sqe, fd, events);
        relay_sqe_set_op(sqe, op);
        *slot = OP_ARMED;
        s->ref++;
        return 0;
}

/* The completion without F_MORE still comes, and puts the slot back to idle. */
static void op_cancel(struct relay_stream *s, struct relay_op *op, enum op_state *slot)
{
        if (*slot == OP_ARMED) {
                *slot = OP_CANCELLING;
                (void)relay_cancel_op(s->r, op);
        }
}

/* ---- reading into the pool ---- */

/* A freeze still has bytes to read that the guest wrote before it: they are delivered, not left in
 * a socket the save then closes (a guest without the resume extension never sends them again). */
static bool drain_pending(const struct relay_stream *s)
{
        return s->state == STREAM_FREEZING && guest_is_src(s) && s->guest_fd >= 0 && !s->src_eof &&
               s->hdr_state == HDR_NONE && s->c.rx_guest < s->drain_to;
}

static bool rd_wanted(const struct relay_stream *s)
{
        return (s->state == STREAM_RUNNING || drain_pending(s)) && s->rd == OP_IDLE && !s->src_eof &&
               s->hdr_state == HDR_NONE && !s->reposition && !relay_buf_waiter_waiting(&s->buf_wait) &&
               s->held_bytes < (size_t)s->r->cfg.stream_max_bufs * s->r->cfg.buf_size;
}

/* Free bytes after the newest held chunk's data. */
static uint32_t q_tail_space(struct relay_stream *s)
{
        struct stream_chunk *t;

        if (s->q_n == 0)
                return 0;
        t = q_at(s, s->q_n - 1);
        return s->r->cfg.buf_size - (t->off + t->len);
}

static void stream_fail(struct relay_stream *s, int error);
static int splice_kick(struct relay_stream *s);

/* A running stream's read, by the kind of its source. */
static void rd_prep(struct relay_stream *s, struct io_uring_sqe *sqe, size_t budget)
{
        struct relay *r = s->r;

        switch (s->src) {
        case SRC_RECV_MSHOT:
                io_uring_prep_recv_multishot(sqe, src_fd(s), NULL, r->cfg.buf_size, 0);
                if (relay_recv_budget_usable(r)) {
                        sqe->file_index = (uint32_t)budget; /* sqe->optlen in newer uapi headers */
                        s->rd_budget = true;
                }
                break;
        case SRC_READ_MSHOT: io_uring_prep_rw(RELAY_OP_READ_MULTISHOT, sqe, src_fd(s), NULL, 0, 0); break;
        case SRC_READ: io_uring_prep_read(sqe, src_fd(s), NULL, r->cfg.buf_size, (uint64_t)-1); break;
        }
}

static int rd_arm(struct relay_stream *s)
{
        struct relay *r = s->r;
        struct io_uring_sqe *sqe;
        size_t budget;

        if (s->path != PATH_RING)
                return splice_kick(s);
        if (!rd_wanted(s))
                return 0;
        /* The cap is stream_max_bufs * buf_size bytes held. The kernel ends a budgeted multishot
         * once the budget is reached, its last receive overshooting by less than one buffer: the
         * budget keeps that buffer in reserve, so the cap holds exactly. Reads pause until a
         * write frees room (a write is in flight whenever bytes are held). */
        budget = (size_t)r->cfg.stream_max_bufs * r->cfg.buf_size - s->held_bytes;
        budget = budget > r->cfg.buf_size ? budget - r->cfg.buf_size : 0;
        if (relay_recv_budget_usable(r) && s->src == SRC_RECV_MSHOT && budget == 0)
                return 0;
        sqe = relay_get_sqe(r);
        if (!sqe)
                return -EIO;
        s->rd_budget = false;
        if (s->state == STREAM_FREEZING) {
                /* One non-blocking receive at a time, never past what was queued at the freeze: a
                 * guest that keeps writing cannot hold the freeze open. */
                io_uring_prep_recv(sqe, src_fd(s), NULL,
                                   (unsigned)MIN((uint64_t)r->cfg.buf_size, s->drain_to - s->c.rx_guest), MSG_DONTWAIT);
        } else {
                rd_prep(s, sqe, budget);
        }
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = 0;
        relay_sqe_set_op(sqe, &s->rd_op);
        s->rd = OP_ARMED;
        s->ref++;
        return 0;
}

static void rd_cancel(struct relay_stream *s)
{
        op_cancel(s, &s->rd_op, &s->rd);
        relay_splice_reading_stopped(&s->sp);
}

/* Appends a received buffer. A piece that fits after the newest chunk's data is copied there
 * (appending never disturbs a write in flight: its iovec ends where the data ended when it was
 * issued), so a chatty guest facing a stalled endpoint holds few full buffers, not many slivers:
 * two neighbouring chunks always hold more than one buffer's worth. A busy guest's reads fill
 * whole buffers, so the fast path copies nothing. */
static void q_push(struct relay_stream *s, unsigned bid, uint32_t len)
{
        struct relay *r = s->r;

        if (q_tail_space(s) >= len) {
                struct stream_chunk *t = q_at(s, s->q_n - 1);

                memcpy(relay_pool_addr(r, t->bid) + t->off + t->len, relay_pool_addr(r, bid), len);
                t->len += len;
                s->held_bytes += len;
                relay_pool_put(r, bid);
                return;
        }
        if (s->q_n == s->q_cap) {
                /* Never drop: grow the ring of chunk descriptors (the cap normally prevents this). */
                unsigned cap = s->q_cap * 2;
                struct stream_chunk *q = malloc(cap * sizeof(*q));

                if (!q) {
                        /* Out of memory for 12-byte descriptors: the bytes are still delivered by copy. */
                        stream_tell(s, &(struct relay_event){ .kind = RELAY_EVENT_STREAM_NOMEM });
                        relay_pool_put(r, bid);
                        stream_fail(s, -ENOMEM);
                        return;
                }
                for (unsigned i = 0; i < s->q_n; i++)
                        q[i] = *q_at(s, i);
                free(s->q);
                s->q = q;
                s->q_cap = cap;
                s->q_head = 0;
        }
        *q_at(s, s->q_n) = (struct stream_chunk){ .bid = bid, .len = len };
        s->q_n++;
        s->held_bytes += len;
}

/* ---- writing from the pool ---- */

static void stream_check(struct relay_stream *s);
static void ack_kick(struct relay_stream *s);

static void deliver(struct relay_stream *s, size_t n)
{
        struct relay *r = s->r;

        while (n > 0) {
                struct stream_chunk *ch = q_at(s, 0);
                uint32_t m = (uint32_t)MIN((size_t)ch->len, n);

                if (s->ops->on_tap)
                        s->ops->on_tap(s, relay_pool_addr(r, ch->bid) + ch->off, m, s->userdata);
                ch->off += m;
                ch->len -= m;
                n -= m;
                s->held_bytes -= m;
                if (ch->len == 0) {
                        relay_pool_put(r, ch->bid);
                        s->q_head = (s->q_head + 1) % s->q_cap;
                        s->q_n--;
                }
        }
        if (s->q_n == 0)
                s->q_head = 0;
}

static void count_delivered(struct relay_stream *s, size_t n)
{
        if (guest_is_src(s))
                s->c.tx_endpoint += n;
        else {
                s->c.tx_guest += n;
                s->seeded = false;
        }
        s->r->bytes_relayed += n;
}

/* A freezing stdin over a regular file does not wait for a guest that may not read (its process
 * busy elsewhere): what it holds goes back to the file, which is read again from there. */
static bool input_rewinds(const struct relay_stream *s)
{
        return !guest_is_src(s) && s->endpoint_seekable && stream_is_freezing(s);
}

static void input_rewind(struct relay_stream *s)
{
        if (!input_rewinds(s) || s->wr_armed || s->rd != OP_IDLE || s->held_bytes == 0)
                return;
        if (lseek(s->endpoint_fd, -(off_t)s->held_bytes, SEEK_CUR) < 0)
                return; /* the freeze then waits for the guest, as for a fifo */
        s->c.rx_endpoint -= s->held_bytes;
        s->src_eof = false;
        q_release_all(s);
}

static int wr_kick(struct relay_stream *s)
{
        struct io_uring_sqe *sqe;
        unsigned n;

        if (s->wr_armed || s->hdr_state != HDR_NONE || s->reposition || s->q_n == 0 || stream_is_freed(s))
                return 0;
        if (input_rewinds(s))
                return 0; /* a freeze gives the held bytes back to the file instead */
        if (s->endpoint_dead) {
                q_release_all(s);
                return 0;
        }
        if (stream_is_done(s) && s->error != 0 && !guest_is_src(s))
                return 0; /* the guest of a stdin stream is gone: keep the bytes for a redial */
        if (s->dst == DST_DISCARD) {
                size_t held = s->held_bytes;
                s->ref++;
                deliver(s, held);
                count_delivered(s, held);
                stream_unref(s);
                return 0;
        }
        n = MIN(s->q_n, STREAM_IOV_MAX);
        if (n > s->iov_cap) {
                struct iovec *iov = realloc(s->iov, n * sizeof(*iov));
                if (!iov)
                        return -ENOMEM;
                s->iov = iov;
                s->iov_cap = n;
        }
        for (unsigned i = 0; i < n; i++) {
                struct stream_chunk *ch = q_at(s, i);
                s->iov[i] = (struct iovec){ relay_pool_addr(s->r, ch->bid) + ch->off, ch->len };
        }
        sqe = relay_get_sqe(s->r);
        if (!sqe)
                return -EIO;
        if (s->dst == DST_SEND) {
                s->msg = (struct msghdr){ .msg_iov = s->iov, .msg_iovlen = n };
                io_uring_prep_sendmsg(sqe, dst_fd(s), &s->msg, MSG_NOSIGNAL);
        } else
                io_uring_prep_writev(sqe, dst_fd(s), s->iov, n, (uint64_t)-1);
        relay_sqe_set_op(sqe, &s->wr_op);
        s->wr_n = n;
        s->wr_armed = true;
        s->ref++;
        return 0;
}

/* ---- the guest of a stdin stream hanging up ---- */

static bool hup_wanted(const struct relay_stream *s)
{
        return s->dir == RELAY_STREAM_TO_GUEST && s->guest_fd >= 0 && s->hup == OP_IDLE && s->state == STREAM_RUNNING;
}

/* A stdin stream otherwise only notices a vanished guest when it next has bytes to send; with a
 * quiet endpoint that could be never, and the guest's fd would be held for nothing. */
static int hup_arm(struct relay_stream *s)
{
        if (!hup_wanted(s))
                return 0;
        s->hup_gen = s->guest_gen;
        /* POLLHUP is reported whatever the mask: the peer closed both directions. */
        return poll_arm(s, s->guest_fd, POLLHUP, &s->hup_op, &s->hup);
}

static void hup_cancel(struct relay_stream *s)
{
        op_cancel(s, &s->hup_op, &s->hup);
}

static void stream_dst_failed(struct relay_stream *s, int error);

static void on_hup(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct relay_stream *s = container_of(op, struct relay_stream, hup_op);
        int k;

        s->hup = OP_IDLE;
        if (stream_is_freed(s))
                goto out;
        if (res > 0 && (res & (POLLHUP | POLLERR)) && s->hup_gen == s->guest_gen && !stream_is_done(s))
                stream_dst_failed(s, -ECONNRESET);
        k = hup_arm(s);
        if (k < 0)
                stream_dst_failed(s, k);
        stream_check(s);
out:
        stream_unref(s);
}

/* ---- the source's end, watched beside its receive ---- */

/* A multishot receive on AF_UNIX can miss the end that comes right behind the last bytes: the
 * kernel (6.18 here) took the bytes, was told the socket is empty (unix sockets report what is
 * left since 6.17) and waits for a wake-up the peer's close had already given, so the stream never
 * ends (liburing issue 1549 is one form of it; bench B3 with splicing off lost one end in about
 * fifteen runs). A poll of its own is woken by that close whatever the receive did; it then
 * replaces the receive, and a new one reads what is left and the end. Armed at a source's first
 * bytes: the fault needs bytes and the close together, and a stream that never spoke costs no
 * poll (B7). The receive of a freeze's drain is not multishot and needs none. */
static unsigned src_gen(const struct relay_stream *s)
{
        return guest_is_src(s) ? s->guest_gen : 0;
}

static bool end_watch_wanted(const struct relay_stream *s)
{
        return s->src == SRC_RECV_MSHOT && s->end_watch == OP_IDLE && !s->end_seen && s->state == STREAM_RUNNING &&
               s->rd == OP_ARMED && !s->src_eof && src_fd(s) >= 0;
}

static int end_watch_arm(struct relay_stream *s)
{
        if (!end_watch_wanted(s))
                return 0;
        s->end_gen = src_gen(s);
        return poll_arm(s, src_fd(s), POLLRDHUP, &s->end_op, &s->end_watch);
}

static void end_watch_cancel(struct relay_stream *s)
{
        op_cancel(s, &s->end_op, &s->end_watch);
}

static void on_src_end(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct relay_stream *s = container_of(op, struct relay_stream, end_op);

        s->end_watch = OP_IDLE;
        if (stream_is_freed(s))
                goto out;
        if (res > 0 && s->end_gen == src_gen(s)) {
                s->end_seen = true;
                /* Its -ECANCELED re-arms a receive (on_read); one that ends by itself first needs none. */
                if (s->rd == OP_ARMED && s->src == SRC_RECV_MSHOT)
                        rd_cancel(s);
        }
        stream_check(s);
out:
        stream_unref(s);
}

/* ---- delivery acks ---- */

/* Everything read that is no longer held reached the endpoint, or was dropped by a dead or
 * discarding one: either way the guest never has to send it again. */
static uint64_t ack_delivered(const struct relay_stream *s)
{
        return s->c.rx_guest - s->held_bytes - relay_splice_held(&s->sp);
}

static bool ack_wanted(const struct relay_stream *s)
{
        uint64_t d;

        if (!s->ack_on || s->ack_armed || s->ack_failed || s->state != STREAM_RUNNING || s->guest_fd < 0 ||
            s->hdr_state != HDR_NONE)
                return false;
        d = ack_delivered(s);
        if (s->ack_stalled && d == s->ack_stall)
                return false;
        if (s->ack_due)
                return true;
        if (d == s->ack_last)
                return false;
        /* Nothing held: an idle stream's guest frees everything. */
        return d - s->ack_last >= RELAY_STREAM_ACK_STEP || (s->held_bytes == 0 && relay_splice_held(&s->sp) == 0);
}

static int ack_submit(struct relay_stream *s)
{
        struct io_uring_sqe *sqe = relay_get_sqe(s->r);

        if (!sqe)
                return -EIO;
        /* A socket send waits by poll in the kernel, never on an io-wq worker. A new count does not
         * wait at all: a guest that reads none must not hold a freeze or the stream's end on it. */
        io_uring_prep_send(sqe, s->guest_fd, s->ack_buf + s->ack_off, sizeof(s->ack_buf) - s->ack_off,
                           MSG_NOSIGNAL | (s->ack_off == 0 ? MSG_DONTWAIT : 0));
        relay_sqe_set_op(sqe, &s->ack_op);
        s->ack_armed = true;
        s->ack_gen = s->guest_gen;
        s->ref++;
        return 0;
}

/* Sends the newest count; counts that came while one was in flight are coalesced into it. */
static void ack_kick(struct relay_stream *s)
{
        uint64_t d;

        if (!ack_wanted(s))
                return;
        d = ack_delivered(s);
        unaligned_write_le64(s->ack_buf, d);
        s->ack_off = 0;
        s->ack_last = d;
        s->ack_due = false;
        if (ack_submit(s) < 0)
                s->ack_failed = true; /* the ring is broken: relay_run_once reports it */
}

static void on_ack(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct relay_stream *s = container_of(op, struct relay_stream, ack_op);

        s->ack_armed = false;
        if (stream_is_freed(s))
                goto out;
        if (s->ack_gen != s->guest_gen) {
                /* For a connection that was replaced: the new one hears the count afresh. */
                s->ack_off = 0;
        } else if (res > 0) {
                s->ack_off += (uint8_t)res;
                if (s->ack_off < sizeof(s->ack_buf) && ack_submit(s) < 0)
                        s->ack_failed = true;
                else if (s->ack_off == sizeof(s->ack_buf)) {
                        s->ack_told = s->ack_last;
                        s->ack_stalled = false;
                }
        } else if (res == -EAGAIN && s->ack_off == 0) {
                /* Its buffer is full of counts it did not read: this one is dropped (a later one
                 * says more) and the next try waits until more reached the endpoint. */
                s->ack_stall = s->ack_last;
                s->ack_last = s->ack_told;
                s->ack_stalled = true;
        } else if (res == -EINTR || res == -EAGAIN) {
                if (ack_submit(s) < 0)
                        s->ack_failed = true;
        } else {
                /* The guest is going away (its read side reports it); acks end with this connection. */
                s->ack_failed = true;
        }
        stream_check(s);
out:
        stream_unref(s);
}

static void ack_cancel(struct relay_stream *s)
{
        if (s->ack_armed)
                (void)relay_cancel_op(s->r, &s->ack_op);
}

/* A new guest connection (or none): the next one hears the count from its first ack. */
static void ack_new_guest(struct relay_stream *s)
{
        ack_cancel(s);
        s->ack_off = 0;
        s->ack_due = true;
        s->ack_failed = false;
        s->ack_stalled = false;
}

/* ---- the guest's confirmation of stdin's end ---- */

static int cf_arm(struct relay_stream *s)
{
        struct io_uring_sqe *sqe = relay_get_sqe(s->r);

        if (!sqe)
                return -EIO;
        io_uring_prep_recv(sqe, s->guest_fd, s->cf_buf + s->cf_off, sizeof(s->cf_buf) - s->cf_off, 0);
        relay_sqe_set_op(sqe, &s->cf_op);
        s->cf_armed = true;
        s->cf_gen = s->guest_gen;
        s->ref++;
        return 0;
}

static void cf_cancel(struct relay_stream *s)
{
        if (s->cf_armed)
                (void)relay_cancel_op(s->r, &s->cf_op);
}

/* After the half-close the connection stays open for the guest's count: had we closed it, the
 * guest could not tell stdin's end from a host that went away. It goes once the count came, or the
 * guest closed or failed: a guest that never confirms holds an fd of a done stream, nothing more
 * (a freeze, a save, an upgrade and the owner's free do not wait for it). */
static void cf_start(struct relay_stream *s)
{
        s->cf_off = 0;
        if (s->guest_fd >= 0 && cf_arm(s) < 0)
                s->guest_fd = relay_close_fd(s->r, s->guest_fd); /* the ring is broken: relay_run_once says so */
}

static void on_confirm(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct relay_stream *s = container_of(op, struct relay_stream, cf_op);

        s->cf_armed = false;
        if (stream_is_freed(s) || s->cf_gen != s->guest_gen || s->guest_fd < 0)
                goto out;
        if (res > 0)
                s->cf_off += (uint8_t)res;
        if ((res > 0 && s->cf_off < sizeof(s->cf_buf)) || res == -EINTR || res == -EAGAIN) {
                if (cf_arm(s) >= 0)
                        goto out;
        } else if (res > 0 && unaligned_read_le64(s->cf_buf) != s->c.tx_guest)
                stream_tell(s, &(struct relay_event){ .kind = RELAY_EVENT_STDIN_END_MISCOUNTED,
                                                      .bytes = unaligned_read_le64(s->cf_buf),
                                                      .sent = s->c.tx_guest });
        s->guest_fd = relay_close_fd(r, s->guest_fd);
        s->guest_gen++;
out:
        stream_unref(s);
}

/* ---- ends and freezes ---- */

static void stream_done(struct relay_stream *s, int error)
{
        if (stream_is_done(s) || stream_is_freed(s))
                return;
        stream_step(s, STREAM_END);
        rd_cancel(s);
        hup_cancel(s);
        end_watch_cancel(s);
        relay_pool_unwait(&s->buf_wait);
        relay_splice_abort(&s->sp);
        s->error = error;
        /* Not logged here: on_done gets the error and its owner logs it once, with its own names. */
        if (s->ops->on_done) {
                s->ref++;
                s->ops->on_done(s, error, s->userdata);
                stream_unref(s);
        }
}

/* The reading side failed (or EOF'd with an error): deliver what was read, then report. */
static void stream_src_failed(struct relay_stream *s, int error)
{
        if (stream_is_done(s) || stream_is_freed(s) || s->src_eof)
                return;
        rd_cancel(s);
        relay_pool_unwait(&s->buf_wait);
        s->src_eof = true;
        s->src_error = error;
}

/* The writing side failed. Towards the endpoint: the held bytes are lost with it. Towards the
 * guest (stdin): they stay held so a redialled guest still gets them. */
static void stream_dst_failed(struct relay_stream *s, int error)
{
        if (stream_is_freed(s))
                return;
        rd_cancel(s);
        relay_pool_unwait(&s->buf_wait);
        if (guest_is_src(s)) {
                s->endpoint_dead = true;
                if (!s->wr_armed)
                        q_release_all(s);
        }
        stream_done(s, error);
}

/* The endpoint of a from-guest stream failed (EPIPE, ENOSPC, ...): the guest is fine. Keep reading
 * it and drop what it sends, or its process would block for ever on output nobody can take; the
 * error is reported when the guest's output ends. */
static void stream_endpoint_failed(struct relay_stream *s, int error)
{
        if (!s->endpoint_dead)
                stream_tell(s, &(struct relay_event){ .kind = RELAY_EVENT_ENDPOINT_FAILED, .error = error });
        s->endpoint_dead = true;
        s->endpoint_error = error;
        q_release_all(s);
}

/* A local failure (memory, ring): nothing can be trusted to continue. */
static void stream_fail(struct relay_stream *s, int error)
{
        stream_dst_failed(s, error);
}

static void notify_frozen(struct relay_stream *s)
{
        stream_step(s, STREAM_QUIET);
        if (s->ops->on_frozen) {
                s->ref++;
                s->ops->on_frozen(s, s->userdata);
                stream_unref(s);
        }
}

/* Runs after every completion and deferred call: finishes freezes and EOFs once everything is flushed. */
static void stream_check(struct relay_stream *s)
{
        bool quiet;

        ack_kick(s);
        input_rewind(s);
        quiet = s->rd == OP_IDLE && !s->wr_armed && s->hdr_state != HDR_ARMED && s->q_n == 0 && !drain_pending(s) &&
                s->path != PATH_SPLICE && !relay_splice_active(&s->sp) && !s->ack_armed;

        if (stream_is_freezing(s) && quiet) {
                notify_frozen(s);
                return;
        }
        /* The reading side ended and everything it read is delivered: report the end. */
        if (s->state != STREAM_RUNNING || !s->src_eof || !quiet)
                return;
        if (s->src_error) {
                stream_done(s, s->src_error);
                return;
        }
        if (!guest_is_src(s) && s->input_ended)
                s->endpoint_fd = relay_close_fd(s->r, s->endpoint_fd);
        if (guest_is_src(s)) {
                /* Everything the guest sent is at the endpoint: the guest socket has no more use. */
                s->guest_fd = safe_close(s->guest_fd);
        } else if (shutdown(s->guest_fd, SHUT_WR) < 0 && errno != ENOTCONN) {
                stream_done(s, -errno);
                return;
        }
        stream_done(s, s->endpoint_error);
        if (!guest_is_src(s) && s->cf_on && !stream_is_freed(s))
                cf_start(s);
}

static void stream_check_deferred(void *userdata)
{
        struct relay_stream *s = userdata;

        s->check_queued = false;
        if (!stream_is_freed(s)) {
                int k = rd_arm(s);
                if (k >= 0)
                        k = wr_kick(s);
                if (k >= 0)
                        k = hup_arm(s);
                if (k < 0)
                        stream_fail(s, k);
                else
                        stream_check(s);
        }
        stream_unref(s);
}

/* Re-evaluates on the next turn: API calls never run user callbacks re-entrantly. */
static int stream_queue_check(struct relay_stream *s)
{
        int k;

        if (s->check_queued)
                return 0;
        k = relay_defer(s->r, stream_check_deferred, s);
        if (k < 0)
                return k;
        s->check_queued = true;
        s->ref++;
        return 0;
}

/* ---- the splice path (splice.c) ---- */

/* What the ring carries after the splice path gave way to small segments before a full read may
 * try it again: a stream of small writes that turns to bulk pays copies for this long (about a
 * millisecond at B2's rate), one of 100-byte lines one probing splice per 4 MiB. */
#define SPLICE_SMALL_RETRY_BYTES (4u * 1024u * 1024u)

static bool tap_wanted(const struct relay_stream *s)
{
        return s->ops->on_tap && (!s->ops->tap_wanted || s->ops->tap_wanted((struct relay_stream *)s, s->userdata));
}

static bool splice_may_read(struct relay_splice *sp)
{
        struct relay_stream *s = container_of(sp, struct relay_stream, sp);

        return s->state == STREAM_RUNNING && !s->src_eof && !s->endpoint_dead && s->hdr_state == HDR_NONE &&
               !tap_wanted(s);
}

static bool splice_wanted(struct relay_stream *s)
{
        return s->splice_dst && !s->splice_refused && !s->r->cfg.no_splice && splice_may_read(&s->sp);
}

static void splice_moved(struct relay_splice *sp, size_t rx, size_t tx)
{
        struct relay_stream *s = container_of(sp, struct relay_stream, sp);

        s->c.rx_guest += rx;
        s->c.tx_endpoint += tx;
        s->r->bytes_relayed += tx;
        s->r->bytes_spliced += tx;
        ack_kick(s);
}

/* Back to the ring; the deferred check re-arms the ring's reads or reports the end. */
static void splice_stopped(struct relay_splice *sp, enum relay_splice_stop why, int error)
{
        struct relay_stream *s = container_of(sp, struct relay_stream, sp);

        s->path = PATH_RING;
        if (why == RELAY_SPLICE_SRC_END && error < 0)
                stream_src_failed(s, error);
        else if (why == RELAY_SPLICE_SRC_END)
                s->src_eof = true;
        else if (why == RELAY_SPLICE_DST_FAILED)
                stream_endpoint_failed(s, error);
        else if (why == RELAY_SPLICE_REFUSED)
                s->splice_refused = true;
        else if (why == RELAY_SPLICE_SMALL)
                s->splice_after = s->c.rx_guest + SPLICE_SMALL_RETRY_BYTES;
        if (stream_queue_check(s) < 0)
                stream_fail(s, -ENOMEM);
}

static void splice_ref(struct relay_splice *sp)
{
        container_of(sp, struct relay_stream, sp)->ref++;
}

static void splice_unref(struct relay_splice *sp)
{
        stream_unref(container_of(sp, struct relay_stream, sp));
}

static const struct relay_splice_ops stream_splice_ops = {
        .may_read = splice_may_read,
        .moved = splice_moved,
        .stopped = splice_stopped,
        .ref = splice_ref,
        .unref = splice_unref,
};

/* rd_arm off the ring: what the ring read goes out first, in order, then splice.c takes over. */
static int splice_kick(struct relay_stream *s)
{
        if (s->path == PATH_SPLICE || relay_splice_active(&s->sp))
                return 0;
        if (s->rd != OP_IDLE || s->wr_armed || s->q_n > 0 || s->hdr_state != HDR_NONE)
                return 0;
        if (!splice_wanted(s)) {
                s->path = PATH_RING;
                return rd_arm(s);
        }
        s->path = PATH_SPLICE;
        return relay_splice_start(&s->sp, s->guest_fd, s->endpoint_fd);
}

/* ---- completions ---- */

static int input_reposition(struct relay_stream *s);

static bool read_refused(int res)
{
        return res == -EINVAL || res == -EOPNOTSUPP || res == -EBADFD || res == -ENOTSUP;
}

static void on_read(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct relay_stream *s = container_of(op, struct relay_stream, rd_op);
        bool more = flags & IORING_CQE_F_MORE;
        int k;

        if (!more)
                s->rd = OP_IDLE;
        if (flags & IORING_CQE_F_BUFFER) {
                unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
                relay_pool_took(r);
                if (res > 0 && !stream_is_freed(s))
                        q_push(s, bid, (uint32_t)res);
                else
                        relay_pool_put(r, bid);
        }
        if (stream_is_freed(s))
                goto out;

        if (res > 0) {
                if (guest_is_src(s))
                        s->c.rx_guest += (uint64_t)res;
                else
                        s->c.rx_endpoint += (uint64_t)res;
                if (s->rd_budget && !relay_recv_budget_known(r))
                        relay_recv_budget_learnt(r, true);
                if ((uint32_t)res >= r->cfg.splice_min && s->path == PATH_RING && s->c.rx_guest >= s->splice_after &&
                    splice_wanted(s)) {
                        s->path = PATH_TO_SPLICE;
                        rd_cancel(s);
                }
                /* A multishot read without a byte budget is stopped by hand at the cap. */
                if (more && !s->rd_budget && s->held_bytes >= (size_t)r->cfg.stream_max_bufs * r->cfg.buf_size)
                        rd_cancel(s);
        } else if (res == 0) {
                s->src_eof = true;
                rd_cancel(s);
        } else if (res == -ENOBUFS) {
                /* The shared pool ran dry: wait for buffers to come back, then re-arm. */
                if (!more)
                        relay_pool_wait(r, &s->buf_wait);
        } else if (res == -EAGAIN && s->state == STREAM_FREEZING) {
                /* Read dry (SIOCINQ counted bytes the guest side has not made readable yet, or the
                 * count was a guess): the drain is over. */
                s->drain_to = s->c.rx_guest;
        } else if (res == -ECANCELED || res == -EINTR || res == -EAGAIN) {
                /* re-armed below when still wanted */
        } else if (s->rd_budget && !relay_recv_budget_known(r) && res == -EINVAL) {
                relay_recv_budget_learnt(r, false);
                stream_tell(s, &(struct relay_event){ .kind = RELAY_EVENT_RECV_BUDGET_REFUSED });
        } else if (s->src == SRC_READ_MSHOT && read_refused(res)) {
                /* The kernel has the opcode (relay_new probed it) but not for this file: this
                 * stream reads the plain way (a real error shows again there), the others are not
                 * concerned. */
                s->src = SRC_READ;
                stream_tell(s, &(struct relay_event){ .kind = RELAY_EVENT_READ_MSHOT_REFUSED, .error = res });
        } else
                stream_src_failed(s, res);

        if (s->rd == OP_IDLE && s->reposition && (k = input_reposition(s)) < 0) {
                stream_fail(s, k);
                stream_check(s);
                goto out;
        }
        if (s->rd == OP_IDLE) {
                k = rd_arm(s);
                if (k >= 0)
                        k = wr_kick(s);
        } else
                k = wr_kick(s);
        if (k >= 0 && res > 0)
                k = end_watch_arm(s);
        if (k < 0)
                stream_fail(s, k);
        stream_check(s);
out:
        if (!more)
                stream_unref(s);
}

static void on_write(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct relay_stream *s = container_of(op, struct relay_stream, wr_op);
        int k;

        s->wr_armed = false;
        s->wr_n = 0;
        if (stream_is_freed(s))
                goto out;
        if (s->wr_cancelled && res == -ECANCELED)
                res = -EAGAIN; /* nothing went: the freeze gives the bytes back to the file */
        s->wr_cancelled = false;
        if (res == 0)
                res = -EPIPE;
        if (res > 0) {
                deliver(s, (size_t)res);
                count_delivered(s, (size_t)res);
        } else if (guest_is_src(s) && res != -EINTR && res != -EAGAIN) {
                stream_endpoint_failed(s, res);
        } else if (res != -EINTR && res != -EAGAIN) {
                /* A guest that hung up on its stdin reads as "guest dropped", not a dead endpoint. */
                stream_dst_failed(s, !guest_is_src(s) && res == -EPIPE ? -ECONNRESET : res);
                stream_check(s);
                goto out;
        }
        k = rd_arm(s);
        if (k >= 0)
                k = wr_kick(s);
        if (k < 0)
                stream_fail(s, k);
        stream_check(s);
out:
        stream_unref(s);
}

static int hdr_kick(struct relay_stream *s);

/* The exactly-once resume header (V4), little-endian. Towards stdout/stderr we tell the guest how
 * many bytes we already have; on stdin the roles swap and the guest tells us. */
static void hdr_prepare(struct relay_stream *s)
{
        unaligned_write_le64(s->hdr, guest_is_src(s) ? s->c.rx_guest : 0);
        s->hdr_off = 0;
        s->hdr_state = HDR_PENDING;
}

/* A regular file's position follows rx_endpoint (plain reads at the file position): moving it by
 * the guest's count less that puts the next read right after the guest's last byte, whatever was
 * held, lost with a connection, or read by a daemon before a crash. */
static int input_reposition(struct relay_stream *s)
{
        int64_t delta = (int64_t)(s->guest_count - s->c.rx_endpoint);

        s->reposition = false;
        if (delta != 0) {
                if (lseek(s->endpoint_fd, (off_t)delta, SEEK_CUR) < 0)
                        return -errno;
                /* An end the old position had reached is not the end from the new one. */
                if (delta < 0)
                        s->src_eof = false;
        }
        q_release_all(s);
        s->c.rx_endpoint = s->guest_count;
        s->c.tx_guest = s->guest_count;
        return 0;
}

/* stdin: the guest's count of what it received. A file endpoint goes on right after it. Otherwise
 * bytes sent before the reconnect that it never got cannot be sent again (no stdin history is
 * kept): say so rather than pretend. More than was sent is a lie, unless nothing was sent since
 * our counters were seeded from a record the owner says may be stale: one written before a crash
 * is older than the guest's count. */
static int hdr_check_guest_count(struct relay_stream *s)
{
        uint64_t count = unaligned_read_le64(s->hdr);

        if (count > s->c.tx_guest && !(s->seeded && s->seed_stale)) {
                stream_tell(s, &(struct relay_event){
                                       .kind = RELAY_EVENT_STDIN_OVERCLAIMED, .bytes = count, .sent = s->c.tx_guest });
                return -EPROTO;
        }
        s->guest_count = count;
        if (s->endpoint_seekable && s->endpoint_fd >= 0) {
                s->reposition = true;
                return s->rd == OP_IDLE ? input_reposition(s) : 0;
        }
        if (count < s->c.tx_guest)
                stream_tell(s, &(struct relay_event){ .kind = RELAY_EVENT_STDIN_LOST, .bytes = s->c.tx_guest - count });
        if (count > s->c.tx_guest) {
                /* What the dead daemon read beyond its record reached the guest: count it as sent. */
                s->c.rx_endpoint += count - s->c.tx_guest;
                s->c.tx_guest = count;
        }
        return 0;
}

static void on_header(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct relay_stream *s = container_of(op, struct relay_stream, hdr_op);
        int k = 0;

        s->hdr_state = HDR_PENDING;
        if (stream_is_freed(s))
                goto out;
        if (res > 0) {
                s->hdr_off += (unsigned)res;
                if (s->hdr_off >= sizeof(s->hdr)) {
                        s->hdr_state = HDR_NONE;
                        if (!guest_is_src(s) && (k = hdr_check_guest_count(s)) < 0) {
                                stream_dst_failed(s, k);
                                stream_check(s);
                                goto out;
                        }
                }
        } else if (res != -EINTR && res != -EAGAIN) {
                s->hdr_state = HDR_NONE;
                res = res == 0 || res == -EPIPE ? -ECONNRESET : res;
                if (guest_is_src(s))
                        stream_src_failed(s, res);
                else
                        stream_dst_failed(s, res);
                stream_check(s);
                goto out;
        }
        if (s->hdr_state == HDR_PENDING)
                k = hdr_kick(s);
        else {
                k = rd_arm(s);
                if (k >= 0)
                        k = wr_kick(s);
        }
        if (k < 0)
                stream_fail(s, k);
        stream_check(s);
out:
        stream_unref(s);
}

static int hdr_kick(struct relay_stream *s)
{
        struct io_uring_sqe *sqe;

        if (s->hdr_state != HDR_PENDING)
                return 0;
        sqe = relay_get_sqe(s->r);
        if (!sqe)
                return -EIO;
        if (guest_is_src(s))
                io_uring_prep_send(sqe, s->guest_fd, s->hdr + s->hdr_off, sizeof(s->hdr) - s->hdr_off, MSG_NOSIGNAL);
        else
                io_uring_prep_recv(sqe, s->guest_fd, s->hdr + s->hdr_off, sizeof(s->hdr) - s->hdr_off, 0);
        relay_sqe_set_op(sqe, &s->hdr_op);
        s->hdr_state = HDR_ARMED;
        s->ref++;
        return 0;
}

/* The pool has buffers again: receive where this stream stopped. */
static void on_buffers(struct relay_buf_waiter *w)
{
        struct relay_stream *s = container_of(w, struct relay_stream, buf_wait);
        int k = rd_arm(s);

        if (k < 0)
                stream_fail(s, k);
}

/* ---- API ---- */

static int classify(int fd, enum stream_src *ret_src, enum stream_dst *ret_dst)
{
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISSOCK(st.st_mode)) {
                *ret_src = SRC_RECV_MSHOT;
                *ret_dst = DST_SEND;
        } else if (S_ISFIFO(st.st_mode)) {
                *ret_src = SRC_READ_MSHOT;
                *ret_dst = DST_WRITE;
        } else if (S_ISREG(st.st_mode) || S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
                *ret_src = SRC_READ;
                *ret_dst = DST_WRITE;
        } else
                return -EBADF;
        return 0;
}

static bool fd_is_regular(int fd)
{
        struct stat st;

        return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

static int fd_set_nonblock(int fd)
{
        int fl = fcntl(fd, F_GETFL);

        if (fl < 0)
                return -errno;
        if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

int relay_stream_new_at(struct relay *r, enum relay_stream_dir dir, int guest_fd, int endpoint_fd,
                        const struct relay_stream_ops *ops, const struct relay_stream_counters *seed,
                        bool send_offset_header, void *userdata, struct relay_stream **ret)
{
        enum stream_src gsrc, esrc = SRC_READ;
        enum stream_dst gdst, edst = DST_DISCARD;
        struct relay_stream *s;
        int k;

        if (dir < 0 || dir >= _RELAY_STREAM_DIR_MAX || guest_fd < 0 || !ops)
                return -EINVAL;
        k = classify(guest_fd, &gsrc, &gdst);
        if (k < 0)
                return k;
        if (gsrc != SRC_RECV_MSHOT)
                return -ENOTSOCK;
        if (endpoint_fd >= 0) {
                k = classify(endpoint_fd, &esrc, &edst);
                if (k < 0)
                        return k;
        }

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        *s = (struct relay_stream){
                .r = r,
                .dir = dir,
                .guest_fd = guest_fd,
                .endpoint_fd = endpoint_fd,
                .ops = ops,
                .userdata = userdata,
                .ref = 1,
                .rd_op.fn = on_read,
                .wr_op.fn = on_write,
                .hdr_op.fn = on_header,
                .hup_op.fn = on_hup,
                .end_op.fn = on_src_end,
                .ack_op.fn = on_ack,
                .cf_op.fn = on_confirm,
        };
        relay_buf_waiter_init(&s->buf_wait, on_buffers);
        /* Sockets take splices from a pipe of ours; a fifo takes them straight from the guest. */
        s->splice_dst = dir == RELAY_STREAM_FROM_GUEST && (esrc == SRC_RECV_MSHOT || esrc == SRC_READ_MSHOT);
        /* A splice into a socket waits when the socket's file is blocking, whatever its flags say;
         * the ring's sends do not care (the stream owns the fd). */
        if (s->splice_dst && esrc == SRC_RECV_MSHOT && fd_set_nonblock(endpoint_fd) < 0)
                s->splice_dst = false;
        relay_splice_init(&s->sp, r, &stream_splice_ops, esrc == SRC_READ_MSHOT, r->cfg.splice_min);
        snprintf(s->label, sizeof(s->label), "fd %d", guest_fd);
        if (seed) {
                s->c = *seed;
                s->seeded = true;
        }
        if (dir == RELAY_STREAM_FROM_GUEST) {
                s->src = SRC_RECV_MSHOT;
                s->dst = edst;
        } else {
                s->src = esrc;
                /* A READ_MULTISHOT on a fifo opened by path that has read once never completes
                 * when its writer closes (Linux 6.18; a plain read and a poll do see the EOF), so
                 * stdin, a process's slow stream, reads the plain way: its end reaches the guest. */
                if (s->src == SRC_READ_MSHOT)
                        s->src = SRC_READ;
                s->dst = DST_SEND;
                s->endpoint_seekable = endpoint_fd >= 0 && fd_is_regular(endpoint_fd);
                /* No endpoint: an input that ended before this connection; the guest hears the end. */
                s->src_eof = endpoint_fd < 0;
        }
        s->q_cap = 2 * r->cfg.stream_max_bufs + 2; /* the worst case of q_push's packing */
        s->q = calloc(s->q_cap, sizeof(*s->q));
        if (!s->q) {
                free(s);
                return -ENOMEM;
        }
        if (send_offset_header)
                hdr_prepare(s);
        k = send_offset_header ? hdr_kick(s) : rd_arm(s);
        if (k < 0) {
                /* Nothing was submitted yet (the SQE failed): the memory can go now. */
                free(s->q);
                free(s);
                return k;
        }
        /* Fails only with a broken ring, which relay_run_once reports. */
        (void)hup_arm(s);
        r->n_streams++;
        relay_pipes_trim(r);
        if (!send_offset_header && s->src_eof)
                (void)stream_queue_check(s); /* the end, at once */
        *ret = s;
        return 0;
}

int relay_stream_new(struct relay *r, enum relay_stream_dir dir, int guest_fd, int endpoint_fd,
                     const struct relay_stream_ops *ops, void *userdata, struct relay_stream **ret)
{
        return relay_stream_new_at(r, dir, guest_fd, endpoint_fd, ops, NULL, false, userdata, ret);
}

void relay_stream_set_label(struct relay_stream *s, const char *label)
{
        snprintf(s->label, sizeof(s->label), "%s", label);
}

void relay_stream_set_seed_stale(struct relay_stream *s)
{
        s->seed_stale = true;
}

int relay_stream_set_eof_confirm(struct relay_stream *s, bool on)
{
        if (guest_is_src(s))
                return -EINVAL;
        s->cf_on = on;
        return 0;
}

int relay_stream_end_input(struct relay_stream *s)
{
        if (guest_is_src(s))
                return -EINVAL;
        if (s->input_ended)
                return 0;
        rd_cancel(s);
        relay_pool_unwait(&s->buf_wait);
        s->input_ended = true;
        s->src_eof = true;
        s->endpoint_seekable = false; /* what was read is what the guest gets */
        return stream_queue_check(s);
}

int relay_stream_set_ack(struct relay_stream *s, bool on)
{
        if (!guest_is_src(s))
                return -EINVAL;
        if (on && !s->ack_on)
                s->ack_due = true;
        s->ack_on = on;
        return on ? stream_queue_check(s) : 0;
}

void relay_stream_get_counters(const struct relay_stream *s, struct relay_stream_counters *ret)
{
        *ret = s->c;
}

void relay_stream_seed_counters(struct relay_stream *s, const struct relay_stream_counters *c)
{
        s->c = *c;
}

void relay_stream_get_held(const struct relay_stream *s, size_t *ret_bytes, unsigned *ret_bufs)
{
        if (ret_bytes)
                *ret_bytes = s->held_bytes + relay_splice_held(&s->sp);
        if (ret_bufs)
                *ret_bufs = s->q_n;
}

/* What the guest wrote before the freeze and the kernel still holds. Without SIOCINQ (an older
 * vsock) the drain reads until the socket is dry, at most one cap's worth. */
static uint64_t drain_bytes(const struct relay_stream *s)
{
        int inq = 0;

        if (!guest_is_src(s) || s->guest_fd < 0 || s->src_eof)
                return 0;
        if (ioctl(s->guest_fd, SIOCINQ, &inq) < 0)
                return (uint64_t)s->r->cfg.stream_max_bufs * s->r->cfg.buf_size;
        return inq > 0 ? (uint64_t)inq : 0;
}

int relay_stream_freeze(struct relay_stream *s)
{
        if (stream_is_freezing(s) || stream_is_frozen(s))
                return -EALREADY;
        /* An ended stream freezes too: a new guest that comes during the freeze then joins it
         * frozen (its bytes wait in its socket), not running while its owner counts. */
        if (s->state != STREAM_RUNNING && s->state != STREAM_DONE)
                return -ESTALE;
        stream_step(s, STREAM_FREEZE);
        /* Counted now: bytes the cancelled receive still brings in count towards it. */
        s->drain_to = s->c.rx_guest + drain_bytes(s);
        rd_cancel(s);
        hup_cancel(s);
        end_watch_cancel(s);
        if (input_rewinds(s) && s->wr_armed && !s->wr_cancelled) {
                s->wr_cancelled = true;
                (void)relay_cancel_op(s->r, &s->wr_op);
        }
        relay_pool_unwait(&s->buf_wait);
        return stream_queue_check(s);
}

int relay_stream_resume(struct relay_stream *s)
{
        if (!stream_is_freezing(s) && !stream_is_frozen(s))
                return -EINVAL;
        stream_step(s, STREAM_RESUME);
        return stream_queue_check(s);
}

/* Frozen or ended, and nothing in flight on the guest connection. */
static bool guest_replaceable(const struct relay_stream *s)
{
        if (!stream_is_frozen(s) && !stream_is_done(s))
                return false;
        if (s->hdr_state == HDR_ARMED)
                return false;
        return guest_is_src(s) ? s->rd == OP_IDLE && !relay_splice_active(&s->sp) : !s->wr_armed;
}

int relay_stream_replace_guest(struct relay_stream *s, int guest_fd, bool send_offset_header)
{
        enum stream_src src;
        enum stream_dst dst;
        int k;

        if (!guest_replaceable(s))
                return -EBUSY;
        /* Refused, the connection is closed here too: from the swap on it is the stream's either
         * way, so only -EBUSY leaves it the caller's (relay.h). */
        k = classify(guest_fd, &src, &dst);
        if (k >= 0 && src != SRC_RECV_MSHOT)
                k = -ENOTSOCK;
        /* An endpoint that failed can't be revived by a new guest. */
        if (k >= 0 && s->endpoint_dead)
                k = -ESTALE;
        if (k < 0) {
                safe_close(guest_fd);
                return k;
        }

        cf_cancel(s);
        relay_close_fd(s->r, s->guest_fd);
        s->guest_fd = guest_fd;
        s->guest_gen++;
        hup_cancel(s);
        end_watch_cancel(s);
        ack_new_guest(s);
        if (stream_is_done(s)) {
                stream_step(s, STREAM_NEW_GUEST);
                s->error = 0;
        }
        /* An EOF or error belonged to the old connection (one may end during a freeze's drain). */
        if (guest_is_src(s)) {
                s->src_eof = false;
                s->src_error = 0;
                s->end_seen = false;
        }
        if (send_offset_header) {
                hdr_prepare(s);
                k = hdr_kick(s);
                if (k < 0)
                        return k;
        }
        return stream_queue_check(s);
}

int relay_stream_detach_guest(struct relay_stream *s)
{
        if (!guest_replaceable(s))
                return -EBUSY;
        cf_cancel(s);
        s->guest_fd = relay_close_fd(s->r, s->guest_fd);
        s->guest_gen++;
        hup_cancel(s);
        end_watch_cancel(s);
        ack_new_guest(s);
        return 0;
}

int relay_stream_release(struct relay_stream *s, int *ret_guest_fd, int *ret_endpoint_fd,
                         struct relay_stream_counters *ret_counters)
{
        size_t held = 0;

        /* An ended stream has nothing more to move, but its connection and endpoint go on there. */
        if (!stream_is_frozen(s) && s->state != STREAM_DONE)
                return -EINVAL;
        relay_stream_get_held(s, &held, NULL);
        /* A half-sent ack would leave the other process a connection cut inside a count. */
        if (held > 0 || !guest_replaceable(s) || s->wr_armed || s->rd != OP_IDLE || s->ack_armed)
                return -EBUSY;
        /* A count the guest sends now is the other process's to read. */
        cf_cancel(s);
        *ret_guest_fd = s->guest_fd;
        *ret_endpoint_fd = s->endpoint_fd;
        *ret_counters = s->c;
        /* The fds are the caller's now: free closes nothing; a cancelled poll still in flight
         * holds its own file reference. */
        s->guest_fd = -1;
        s->endpoint_fd = -1;
        relay_stream_free(s);
        return 0;
}

struct relay_stream *relay_stream_free(struct relay_stream *s)
{
        if (!s || stream_is_freed(s))
                return NULL;
        stream_step(s, STREAM_FREE);
        s->r->n_streams--;
        relay_pool_unwait(&s->buf_wait);
        rd_cancel(s);
        relay_splice_abort(&s->sp);
        if (s->wr_armed)
                (void)relay_cancel_op(s->r, &s->wr_op);
        if (s->hdr_state == HDR_ARMED)
                (void)relay_cancel_op(s->r, &s->hdr_op);
        hup_cancel(s);
        end_watch_cancel(s);
        ack_cancel(s);
        cf_cancel(s);
        /* In-flight requests hold their own file references until the cancels land. */
        s->guest_fd = relay_close_fd(s->r, s->guest_fd);
        s->endpoint_fd = relay_close_fd(s->r, s->endpoint_fd);
        stream_unref(s);
        return NULL;
}

const char *relay_stream_dir_to_string(enum relay_stream_dir d)
{
        switch (d) {
        case RELAY_STREAM_TO_GUEST: return "to-guest";
        case RELAY_STREAM_FROM_GUEST: return "from-guest";
        default: return NULL;
        }
}
