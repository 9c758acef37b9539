/* relay/splice.c: one stream's bulk without copies: non-blocking splice(2) guest socket -> a pipe
 * lent by pipe-pool.c -> endpoint, or, when the pool has none to lend, socket -> fifo endpoint in
 * one move. Every splice is issued from the loop once a poll said a side is ready, so nothing runs
 * on io-wq workers (io_uring's own splice opcode would punt to them: a worker per busy stream, and
 * B7 allows none). */
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "relay/internal.h"
#include "relay/splice.h"

/* Moves per stream per loop turn: a busy stream yields to the others (and to the ring's
 * completions) after this many, and goes on in a deferred call. */
#define SPLICE_TURN_STEPS 16u
/* What one direct splice into a fifo asks for; the fifo's free room bounds it anyway. */
#define SPLICE_DIRECT_MAX (1u << 20)
#define SPLICE_FLAGS (SPLICE_F_MOVE | SPLICE_F_NONBLOCK)

enum step {
        STEP_MOVED,
        STEP_SRC_EMPTY,
        STEP_DST_FULL,
        STEP_NOT_READING,
        STEP_SRC_END,
        STEP_DST_FAILED,
        STEP_NO_PIPE,
        STEP_REFUSED,
        STEP_SMALL,
};

struct moved {
        size_t rx, tx;
        int error;
        /* may_read, asked once per pump: nothing else runs until the pump returns, and the owner's
         * answer walks its own state (cold in cache with many streams: 1.4 % of B2 asked per step). */
        bool may_read;
};

static void pipe_drop(struct relay_splice *sp)
{
        sp->pipe = relay_pipe_put(sp->r, sp->pipe, sp->in_pipe == 0);
        sp->in_pipe = 0;
}

static bool splice_refused(int e)
{
        return e == EINVAL || e == EOPNOTSUPP || e == ENOSYS;
}

/* A pipe holds 16 segments, whatever their size: from a unix socket whose backlog is 100-byte
 * writes a splice moved 1,600 bytes, where one ring read takes a whole buffer of them. So a read
 * that moved less than a quarter of `min` while at least `min` still waits says the backlog is small
 * segments, and the ring does better. B4 (one stream of 100-byte lines) had entered the path this
 * way: one run's vsockmuxd made 17k splices. */
static bool backlog_in_small_segments(struct relay_splice *sp, size_t moved)
{
        int avail = 0;

        if (moved >= sp->min / 4)
                return false;
        return ioctl(sp->src, FIONREAD, &avail) >= 0 && (size_t)avail >= sp->min;
}

/* socket -> fifo: EAGAIN does not say which side is not ready; a zero-timeout poll does. */
static enum step step_direct(struct relay_splice *sp, struct moved *m)
{
        struct pollfd p[2] = { { .fd = sp->src, .events = POLLIN }, { .fd = sp->dst, .events = POLLOUT } };
        ssize_t n;

        if (!m->may_read)
                return STEP_NOT_READING;
        n = splice(sp->src, NULL, sp->dst, NULL, SPLICE_DIRECT_MAX, SPLICE_FLAGS);
        if (n > 0) {
                m->rx += (size_t)n;
                m->tx += (size_t)n;
                sp->small = backlog_in_small_segments(sp, (size_t)n); /* a fifo holds 16 too */
                return STEP_MOVED;
        }
        if (n == 0)
                return STEP_SRC_END;
        if (errno == EINTR)
                return STEP_MOVED;
        if (errno == EPIPE) {
                m->error = -EPIPE;
                return STEP_DST_FAILED;
        }
        if (splice_refused(errno))
                return STEP_REFUSED;
        if (errno != EAGAIN) {
                m->error = -errno;
                return STEP_SRC_END;
        }
        if (poll(p, 2, 0) < 0)
                return STEP_MOVED;
        if (!(p[1].revents & (POLLOUT | POLLERR)))
                return STEP_DST_FULL;
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
                return STEP_SRC_EMPTY;
        return STEP_MOVED; /* both ready by now: try again */
}

/* socket -> our pipe -> endpoint: what is in the pipe goes out before the next read. A fifo
 * endpoint takes this way too while the pool has a pipe: our pipe's room beside the fifo's means
 * fewer, fuller splices and no poll to tell the sides apart (B9.1: 16 % less CPU than straight in). */
static enum step step_piped(struct relay_splice *sp, struct moved *m)
{
        ssize_t n;
        int k;

        if (sp->in_pipe > 0) {
                n = splice(sp->pipe->rfd, NULL, sp->dst, NULL, sp->in_pipe, SPLICE_FLAGS);
                if (n > 0) {
                        sp->in_pipe -= (size_t)n;
                        m->tx += (size_t)n;
                        if (sp->in_pipe == 0)
                                pipe_drop(sp); /* empty: back to the pool */
                        return STEP_MOVED;
                }
                if (n < 0 && errno == EINTR)
                        return STEP_MOVED;
                if (n < 0 && errno == EAGAIN)
                        return STEP_DST_FULL;
                m->error = n == 0 ? -EPIPE : -errno;
                pipe_drop(sp);
                return STEP_DST_FAILED;
        }
        if (!m->may_read)
                return STEP_NOT_READING;
        if (sp->small)
                return STEP_SMALL;
        if (!sp->pipe) {
                k = relay_pipe_get(sp->r, &sp->pipe);
                if (k < 0)
                        return sp->direct ? step_direct(sp, m) : STEP_NO_PIPE;
        }
        n = splice(sp->src, NULL, sp->pipe->wfd, NULL, sp->pipe->size, SPLICE_FLAGS);
        if (n > 0) {
                sp->in_pipe = (size_t)n;
                m->rx += (size_t)n;
                sp->small = backlog_in_small_segments(sp, (size_t)n);
                return STEP_MOVED;
        }
        k = n == 0 ? 0 : errno;
        pipe_drop(sp);
        if (k == EINTR)
                return STEP_MOVED;
        if (k == EAGAIN)
                return STEP_SRC_EMPTY;
        if (splice_refused(k))
                return STEP_REFUSED;
        m->error = -k;
        return STEP_SRC_END;
}

static void stop(struct relay_splice *sp, enum relay_splice_stop why, int error)
{
        pipe_drop(sp);
        sp->state = RELAY_SPLICE_OFF;
        sp->ops->stopped(sp, why, error);
}

static int poll_arm(struct relay_splice *sp, bool dst)
{
        struct io_uring_sqe *sqe = relay_get_sqe(sp->r);

        if (!sqe)
                return -EIO;
        io_uring_prep_poll_add(sqe, dst ? sp->dst : sp->src, dst ? POLLOUT : POLLIN);
        relay_sqe_set_op(sqe, &sp->poll_op);
        sp->poll_armed = true;
        sp->cancelled = false;
        sp->state = dst ? RELAY_SPLICE_WAIT_DST : RELAY_SPLICE_WAIT_SRC;
        sp->ops->ref(sp);
        return 0;
}

static void on_deferred(void *userdata);

/* The turn's budget is spent: go on next turn (or, without memory for that, once a side is ready). */
static void yield(struct relay_splice *sp)
{
        if (relay_defer(sp->r, on_deferred, sp) >= 0) {
                sp->queued = true;
                sp->ops->ref(sp);
        } else if (poll_arm(sp, sp->in_pipe > 0) < 0)
                stop(sp, RELAY_SPLICE_SRC_END, -EIO);
}

static void pump(struct relay_splice *sp)
{
        struct moved m = {};
        enum step st = STEP_MOVED;

        sp->ops->ref(sp);
        sp->state = RELAY_SPLICE_PUMPING;
        m.may_read = sp->ops->may_read(sp);
        for (unsigned i = 0; i < SPLICE_TURN_STEPS && st == STEP_MOVED; i++)
                st = step_piped(sp, &m);
        /* Counters first: stopped() may report an end that must already see them. */
        if (m.rx > 0 || m.tx > 0)
                sp->ops->moved(sp, m.rx, m.tx);
        if (sp->state != RELAY_SPLICE_PUMPING)
                goto out; /* moved() aborted us */
        switch (st) {
        case STEP_MOVED: yield(sp); break;
        case STEP_SRC_EMPTY:
                if (poll_arm(sp, false) < 0)
                        stop(sp, RELAY_SPLICE_SRC_END, -EIO);
                break;
        case STEP_DST_FULL:
                if (poll_arm(sp, true) < 0)
                        stop(sp, RELAY_SPLICE_DST_FAILED, -EIO);
                break;
        case STEP_NOT_READING: stop(sp, RELAY_SPLICE_IDLE, 0); break;
        case STEP_SRC_END: stop(sp, RELAY_SPLICE_SRC_END, m.error); break;
        case STEP_DST_FAILED: stop(sp, RELAY_SPLICE_DST_FAILED, m.error); break;
        case STEP_NO_PIPE: stop(sp, RELAY_SPLICE_NO_PIPE, 0); break;
        case STEP_REFUSED: stop(sp, RELAY_SPLICE_REFUSED, 0); break;
        case STEP_SMALL: stop(sp, RELAY_SPLICE_SMALL, 0); break;
        }
out:
        sp->ops->unref(sp);
}

static void on_deferred(void *userdata)
{
        struct relay_splice *sp = userdata;

        sp->queued = false;
        if (sp->state == RELAY_SPLICE_PUMPING)
                pump(sp);
        sp->ops->unref(sp);
}

/* Fewer than `min` bytes waiting after a quiet spell: small messages belong on the ring. */
static bool src_has_backlog(struct relay_splice *sp)
{
        int avail = 0;

        if (ioctl(sp->src, FIONREAD, &avail) < 0)
                return true; /* let the splice find out what is wrong */
        return avail == 0 || (size_t)avail >= sp->min;
}

static void on_poll(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct relay_splice *sp = container_of(op, struct relay_splice, poll_op);

        sp->poll_armed = false;
        if (sp->state == RELAY_SPLICE_WAIT_DST)
                pump(sp); /* ready or failed: the splice tells which */
        else if (sp->state == RELAY_SPLICE_WAIT_SRC) {
                if (!sp->ops->may_read(sp))
                        stop(sp, RELAY_SPLICE_IDLE, 0);
                else if (res > 0 && !(res & (POLLHUP | POLLERR)) && !src_has_backlog(sp))
                        stop(sp, RELAY_SPLICE_IDLE, 0);
                else
                        pump(sp);
        }
        sp->ops->unref(sp);
}

void relay_splice_init(struct relay_splice *sp, struct relay *r, const struct relay_splice_ops *ops, bool direct,
                       size_t min)
{
        *sp = (struct relay_splice){
                .r = r,
                .ops = ops,
                .src = -1,
                .dst = -1,
                .direct = direct,
                .min = min,
                .poll_op.fn = on_poll,
        };
}

int relay_splice_start(struct relay_splice *sp, int src, int dst)
{
        if (sp->state != RELAY_SPLICE_OFF || sp->poll_armed)
                return -EBUSY;
        sp->src = src;
        sp->dst = dst;
        sp->small = false;
        pump(sp);
        return 0;
}

void relay_splice_reading_stopped(struct relay_splice *sp)
{
        if (sp->state == RELAY_SPLICE_WAIT_SRC && sp->poll_armed && !sp->cancelled) {
                sp->cancelled = true;
                (void)relay_cancel_op(sp->r, &sp->poll_op);
        }
}

void relay_splice_abort(struct relay_splice *sp)
{
        if (sp->state == RELAY_SPLICE_OFF)
                return;
        sp->state = RELAY_SPLICE_OFF;
        if (sp->poll_armed && !sp->cancelled) {
                sp->cancelled = true;
                (void)relay_cancel_op(sp->r, &sp->poll_op);
        }
        pipe_drop(sp);
}

bool relay_splice_active(const struct relay_splice *sp)
{
        return sp->state != RELAY_SPLICE_OFF || sp->poll_armed;
}

size_t relay_splice_held(const struct relay_splice *sp)
{
        return sp->in_pipe;
}
