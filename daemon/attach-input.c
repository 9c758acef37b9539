/* daemon/attach-input.c: a process's stdin fed by its attach clients: the pipe's write end and the bytes not yet written to it. */
#include "daemon/attach-input.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One state, its moves all in attach_input_next(): OPEN writes at once; HELD has bytes waiting
 * for room (a POLLOUT in flight); CLOSING closes once they went; CLOSED has no fd; ORPHANED was
 * freed while its poll was in flight, which frees it when it completes. */
enum attach_input_state {
        ATTACH_INPUT_OPEN,
        ATTACH_INPUT_HELD,
        ATTACH_INPUT_CLOSING,
        ATTACH_INPUT_CLOSED,
        ATTACH_INPUT_ORPHANED,
};

struct attach_input {
        struct relay *relay;
        int fd;
        enum attach_input_state state;
        bool poll_armed;
        struct relay_op poll_op;
        uint8_t *held; /* ring-free: a buffer of held_len bytes from held_off */
        size_t held_off, held_len, held_cap;
};

static void input_on_poll(struct relay *r, struct relay_op *op, int res, uint32_t flags);

static void input_close_fd(struct attach_input *in)
{
        in->fd = safe_close(in->fd);
        free(in->held);
        in->held = NULL;
        in->held_off = in->held_len = in->held_cap = 0;
}

/* Writes what is held until the pipe is full; -EPIPE when the reader went. */
static int input_flush(struct attach_input *in)
{
        while (in->held_len > 0) {
                ssize_t n = write(in->fd, in->held + in->held_off, in->held_len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return 0;
                if (n < 0)
                        return -errno;
                in->held_off += (size_t)n;
                in->held_len -= (size_t)n;
        }
        in->held_off = 0;
        return 0;
}

static int input_arm_poll(struct attach_input *in)
{
        struct io_uring_sqe *sqe;

        if (in->poll_armed)
                return 0;
        sqe = relay_get_sqe(in->relay);
        if (!sqe)
                return -EIO;
        io_uring_prep_poll_add(sqe, in->fd, POLLOUT);
        relay_sqe_set_op(sqe, &in->poll_op);
        in->poll_armed = true;
        return 0;
}

/* After any change: flush, then settle the state. Returns 0 or -errno (the fd is closed then). */
static int attach_input_next(struct attach_input *in)
{
        int r;

        if (in->state == ATTACH_INPUT_CLOSED || in->state == ATTACH_INPUT_ORPHANED)
                return in->state == ATTACH_INPUT_CLOSED ? -EPIPE : 0;
        r = input_flush(in);
        if (r == 0 && in->held_len > 0)
                r = input_arm_poll(in);
        if (r < 0) {
                input_close_fd(in);
                in->state = ATTACH_INPUT_CLOSED;
                return r;
        }
        if (in->held_len > 0) {
                if (in->state == ATTACH_INPUT_OPEN)
                        in->state = ATTACH_INPUT_HELD;
                return 0;
        }
        if (in->state == ATTACH_INPUT_CLOSING) {
                input_close_fd(in);
                in->state = ATTACH_INPUT_CLOSED;
        } else
                in->state = ATTACH_INPUT_OPEN;
        return 0;
}

static void input_on_poll(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct attach_input *in = container_of(op, struct attach_input, poll_op);

        in->poll_armed = false;
        if (in->state == ATTACH_INPUT_ORPHANED) {
                input_close_fd(in);
                free(in);
                return;
        }
        /* An error on the poll (the reader gone: POLLERR) shows again in the write. */
        (void)attach_input_next(in);
}

int attach_input_new(struct relay *r, int fd, struct attach_input **ret)
{
        struct attach_input *in;
        int fl = fcntl(fd, F_GETFL);

        /* Writes from the loop must never block it. */
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        in = calloc(1, sizeof(*in));
        if (!in)
                return -ENOMEM;
        in->relay = r;
        in->fd = fd;
        in->poll_op.fn = input_on_poll;
        *ret = in;
        return 0;
}

static int input_hold(struct attach_input *in, const uint8_t *data, size_t len)
{
        if (in->held_off > 0) {
                memmove(in->held, in->held + in->held_off, in->held_len);
                in->held_off = 0;
        }
        if (in->held_len + len > in->held_cap) {
                size_t cap = MAX(in->held_cap * 2, in->held_len + len);
                uint8_t *p = realloc(in->held, MIN(cap, (size_t)ATTACH_INPUT_MAX));

                if (!p)
                        return -ENOMEM;
                in->held = p;
                in->held_cap = MIN(cap, (size_t)ATTACH_INPUT_MAX);
        }
        memcpy(in->held + in->held_len, data, len);
        in->held_len += len;
        return 0;
}

int attach_input_write(struct attach_input *in, const void *data, size_t len)
{
        const uint8_t *p = data;
        int r;

        if (in->state == ATTACH_INPUT_CLOSING || in->state == ATTACH_INPUT_CLOSED)
                return -EPIPE;
        if (in->held_len + len > ATTACH_INPUT_MAX)
                return -ENOBUFS;
        /* Nothing held: straight to the pipe, holding only what does not fit. */
        while (in->held_len == 0 && len > 0) {
                ssize_t n = write(in->fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n < 0) {
                        r = -errno;
                        input_close_fd(in);
                        in->state = ATTACH_INPUT_CLOSED;
                        return r;
                }
                p += n;
                len -= (size_t)n;
        }
        if (len > 0) {
                r = input_hold(in, p, len);
                if (r < 0)
                        return r;
        }
        return attach_input_next(in);
}

void attach_input_close(struct attach_input *in)
{
        if (!in || in->state == ATTACH_INPUT_CLOSED || in->state == ATTACH_INPUT_CLOSING)
                return;
        in->state = ATTACH_INPUT_CLOSING;
        (void)attach_input_next(in);
}

bool attach_input_is_closed(const struct attach_input *in)
{
        return in->state == ATTACH_INPUT_CLOSING || in->state == ATTACH_INPUT_CLOSED;
}

struct attach_input *attach_input_free(struct attach_input *in)
{
        struct io_uring_sqe *sqe;

        if (!in)
                return NULL;
        if (in->poll_armed && (sqe = relay_get_sqe(in->relay))) {
                /* The poll completes (cancelled) later and frees it then. */
                io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)&in->poll_op);
                relay_sqe_set_ignore(sqe);
                in->state = ATTACH_INPUT_ORPHANED;
                return NULL;
        }
        input_close_fd(in);
        free(in);
        return NULL;
}
