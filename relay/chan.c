/* relay/chan.c: message channels on the loop: an owned, growing rx buffer and a bounded tx queue of frames. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "relay/internal.h"

#define CHAN_IOV_MAX 64
#define CHAN_RX_INITIAL 16384u

struct chan_frame {
        struct chan_frame *next;
        size_t len, off;
        uint8_t data[];
};

struct relay_chan {
        struct relay *r;
        int fd;
        const struct relay_chan_ops *ops;
        void *userdata;
        struct relay_chan_limits lim;
        struct relay_op rx_op, tx_op;

        uint8_t *rx;
        size_t rx_off, rx_len, rx_cap;

        struct chan_frame *tx_head, **tx_tail;
        size_t tx_bytes;
        unsigned tx_nframes; /* frames covered by the send in flight */
        struct iovec iov[CHAN_IOV_MAX];
        struct msghdr msg;

        /* relay_chan_hold: no reads, deliveries or sends; held_fn once nothing is in flight */
        bool held, held_told;
        relay_chan_held_fn held_fn;
        void *held_userdata;

        unsigned ref;
        int error;
        bool rx_armed, tx_armed;
        bool closing;    /* relay_chan_close: flushing */
        bool closed;     /* fd gone, on_close queued */
        bool owner_gone; /* on_close delivered or relay_chan_free called */
};

static void chan_unref(struct relay_chan *c)
{
        if (--c->ref > 0)
                return;
        while (c->tx_head) {
                struct chan_frame *f = c->tx_head;
                c->tx_head = f->next;
                free(f);
        }
        free(c->rx);
        free(c);
}

static void chan_notify(void *userdata)
{
        struct relay_chan *c = userdata;

        if (!c->owner_gone) {
                c->owner_gone = true;
                c->ops->on_close(c, c->error, c->userdata);
                c->ref--; /* the owner's; the notification's still holds c */
        }
        chan_unref(c);
}

static void chan_shut(struct relay_chan *c, int error)
{
        if (c->closed)
                return;
        c->closed = true;
        c->error = error;
        c->r->n_chans--;
        if (c->rx_armed)
                (void)relay_cancel_op(c->r, &c->rx_op);
        if (c->tx_armed)
                (void)relay_cancel_op(c->r, &c->tx_op);
        /* In-flight requests hold their own file reference until the cancels land. */
        c->fd = relay_close_fd(c->r, c->fd);
        if (c->owner_gone)
                return;
        if (relay_defer(c->r, chan_notify, c) < 0) {
                /* Out of memory for the queue: deliver now rather than never. */
                c->owner_gone = true;
                c->ops->on_close(c, error, c->userdata);
                chan_unref(c);
                return;
        }
        c->ref++;
}

static void chan_held_notify(void *userdata)
{
        struct relay_chan *c = userdata;

        if (c->held && !c->closed && !c->owner_gone)
                c->held_fn(c, c->held_userdata);
        chan_unref(c);
}

/* A hold is told once, when the last request in flight has come back. */
static void chan_hold_check(struct relay_chan *c)
{
        if (!c->held || c->held_told || c->rx_armed || c->tx_armed || c->closed || c->owner_gone)
                return;
        c->held_told = true;
        if (relay_defer(c->r, chan_held_notify, c) < 0) {
                c->held_told = false;
                chan_shut(c, -ENOMEM);
                return;
        }
        c->ref++;
}

static int chan_rx_arm(struct relay_chan *c)
{
        struct io_uring_sqe *sqe;

        if (c->rx_armed || c->closed || c->closing || c->held)
                return 0;
        if (c->rx_off > 0) {
                memmove(c->rx, c->rx + c->rx_off, c->rx_len);
                c->rx_off = 0;
        }
        if (c->rx_len == c->rx_cap) {
                size_t cap = MIN(c->rx_cap * 2, c->lim.max_rx);
                uint8_t *p;

                if (cap <= c->rx_cap)
                        return -EMSGSIZE;
                p = realloc(c->rx, cap);
                if (!p)
                        return -ENOMEM;
                /* The kernel fills rx through io_uring, which valgrind cannot see: zeroed memory keeps
                 * memcheck from calling every parsed byte uninitialised (the valgrind test setup). */
                memset(p + c->rx_cap, 0, cap - c->rx_cap);
                c->rx = p;
                c->rx_cap = cap;
        }
        sqe = relay_get_sqe(c->r);
        if (!sqe)
                return -EIO;
        if (c->lim.packet)
                /* MSG_TRUNC makes the kernel report a packet's true length, so oversize ones are caught. */
                io_uring_prep_recv(sqe, c->fd, c->rx, c->rx_cap, MSG_TRUNC);
        else
                io_uring_prep_recv(sqe, c->fd, c->rx + c->rx_len, c->rx_cap - c->rx_len, 0);
        relay_sqe_set_op(sqe, &c->rx_op);
        c->rx_armed = true;
        c->ref++;
        return 0;
}

static void chan_deliver(struct relay_chan *c)
{
        while (c->rx_len > 0 && !c->closed && !c->closing && !c->owner_gone && !c->held) {
                ssize_t n = c->ops->on_data(c, c->rx + c->rx_off, c->rx_len, c->userdata);

                if (n < 0) {
                        chan_shut(c, (int)n);
                        return;
                }
                if (n == 0 && !c->lim.packet)
                        break;
                if (c->lim.packet || (size_t)n > c->rx_len)
                        n = (ssize_t)c->rx_len;
                c->rx_off += (size_t)n;
                c->rx_len -= (size_t)n;
        }
        if (c->rx_len == 0)
                c->rx_off = 0;
}

static void chan_on_rx(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct relay_chan *c = container_of(op, struct relay_chan, rx_op);
        int k;

        c->rx_armed = false;
        if (c->closed || c->closing || c->owner_gone) {
                chan_unref(c);
                return;
        }
        if (res == 0)
                chan_shut(c, 0);
        else if (res == -ECANCELED && c->held)
                ; /* a hold's cancel: nothing was lost */
        else if (res < 0 && res != -EINTR && res != -EAGAIN)
                chan_shut(c, res);
        else if (res > 0) {
                if (c->lim.packet && (size_t)res > c->rx_cap)
                        chan_shut(c, -EMSGSIZE);
                else {
                        c->rx_len += (size_t)res;
                        chan_deliver(c);
                }
        }
        k = chan_rx_arm(c);
        if (k < 0)
                chan_shut(c, k);
        chan_hold_check(c);
        chan_unref(c);
}

static int chan_tx_kick(struct relay_chan *c)
{
        struct io_uring_sqe *sqe;
        struct chan_frame *f;
        unsigned n = 0;

        if (c->tx_armed || !c->tx_head || c->closed || c->held)
                return 0;
        for (f = c->tx_head; f && n < CHAN_IOV_MAX; f = f->next) {
                c->iov[n++] = (struct iovec){ f->data + f->off, f->len - f->off };
                if (c->lim.packet)
                        break;
        }
        c->tx_nframes = n;
        c->msg = (struct msghdr){ .msg_iov = c->iov, .msg_iovlen = n };
        sqe = relay_get_sqe(c->r);
        if (!sqe)
                return -EIO;
        io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
        relay_sqe_set_op(sqe, &c->tx_op);
        c->tx_armed = true;
        c->ref++;
        return 0;
}

static void chan_on_tx(struct relay *r, struct relay_op *op, int res, uint32_t flags)
{
        struct relay_chan *c = container_of(op, struct relay_chan, tx_op);
        int k;

        c->tx_armed = false;
        if (c->closed) {
                chan_unref(c);
                return;
        }
        if (res < 0 && res != -EINTR && res != -EAGAIN) {
                chan_shut(c, res);
                chan_unref(c);
                return;
        }
        for (size_t left = res > 0 ? (size_t)res : 0; left > 0 && c->tx_head;) {
                struct chan_frame *f = c->tx_head;
                size_t avail = f->len - f->off;

                if (left < avail && !c->lim.packet) {
                        f->off += left;
                        break;
                }
                left -= MIN(left, avail);
                c->tx_bytes -= f->len;
                c->tx_head = f->next;
                if (!c->tx_head)
                        c->tx_tail = &c->tx_head;
                free(f);
        }
        k = chan_tx_kick(c);
        if (k < 0)
                chan_shut(c, k);
        else if (c->closing && !c->tx_head)
                chan_shut(c, 0);
        chan_hold_check(c);
        chan_unref(c);
}

/* A channel that reads nothing yet: relay_chan_new() arms it, relay_chan_adopt() fills it first. */
static int chan_alloc(struct relay *r, int fd, const struct relay_chan_ops *ops, const struct relay_chan_limits *lim,
                      size_t rx_min, void *userdata, struct relay_chan **ret)
{
        struct relay_chan *c;

        if (fd < 0 || !ops || !ops->on_data || !ops->on_close)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (struct relay_chan){
                .r = r,
                .fd = fd,
                .ops = ops,
                .userdata = userdata,
                .rx_op.fn = chan_on_rx,
                .tx_op.fn = chan_on_tx,
                .ref = 1,
        };
        c->tx_tail = &c->tx_head;
        if (lim)
                c->lim = *lim;
        if (c->lim.max_rx == 0)
                c->lim.max_rx = RELAY_CHAN_DEFAULT_MAX;
        if (c->lim.max_tx == 0)
                c->lim.max_tx = RELAY_CHAN_DEFAULT_MAX;
        if (c->lim.max_rx > RELAY_CHAN_LIMIT_MAX || c->lim.max_tx > RELAY_CHAN_LIMIT_MAX) {
                free(c);
                return -EINVAL;
        }
        if (rx_min > c->lim.max_rx) {
                free(c);
                return -EMSGSIZE;
        }
        /* A packet must fit whole; a byte stream grows its buffer as frames demand. */
        c->rx_cap = c->lim.packet ? c->lim.max_rx : MAX(MIN(CHAN_RX_INITIAL, c->lim.max_rx), rx_min);
        c->rx = calloc(1, c->rx_cap); /* zeroed for valgrind: see chan_rx_arm */
        if (!c->rx) {
                free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

/* Frees a channel chan_alloc() made that never armed anything; the caller keeps fd. */
static void chan_alloc_undo(struct relay_chan *c)
{
        chan_unref(c);
}

int relay_chan_new(struct relay *r, int fd, const struct relay_chan_ops *ops, const struct relay_chan_limits *lim,
                   void *userdata, struct relay_chan **ret)
{
        struct relay_chan *c;
        int k;

        k = chan_alloc(r, fd, ops, lim, 0, userdata, &c);
        if (k < 0)
                return k;
        k = chan_rx_arm(c);
        if (k < 0) {
                chan_alloc_undo(c);
                return k;
        }
        r->n_chans++;
        *ret = c;
        return 0;
}

int relay_chan_sendv(struct relay_chan *c, const struct iovec *iov, int iovcnt)
{
        struct chan_frame *f;
        size_t len = 0, at = 0;
        int k;

        if (c->closed || c->closing)
                return -EPIPE;
        if (iovcnt < 0)
                return -EINVAL;
        for (int i = 0; i < iovcnt; i++) {
                if (iov[i].iov_len > c->lim.max_tx)
                        return -ENOBUFS;
                len += iov[i].iov_len;
        }
        if (len > c->lim.max_tx || c->tx_bytes > c->lim.max_tx - len)
                return -ENOBUFS;
        if (len == 0 && !c->lim.packet)
                return 0;
        f = malloc(sizeof(*f) + len);
        if (!f)
                return -ENOMEM;
        *f = (struct chan_frame){ .len = len };
        for (int i = 0; i < iovcnt; i++) {
                if (iov[i].iov_len)
                        memcpy(f->data + at, iov[i].iov_base, iov[i].iov_len);
                at += iov[i].iov_len;
        }
        *c->tx_tail = f;
        c->tx_tail = &f->next;
        c->tx_bytes += len;
        k = chan_tx_kick(c);
        if (k < 0)
                chan_shut(c, k);
        return 0;
}

int relay_chan_send(struct relay_chan *c, const void *data, size_t len)
{
        struct iovec iov = { (void *)data, len };

        return relay_chan_sendv(c, &iov, 1);
}

size_t relay_chan_tx_pending(struct relay_chan *c)
{
        return c->tx_bytes;
}

void relay_chan_close(struct relay_chan *c)
{
        if (!c || c->closed || c->closing)
                return;
        c->closing = true;
        if (c->rx_armed)
                (void)relay_cancel_op(c->r, &c->rx_op);
        if (!c->tx_head && !c->tx_armed)
                chan_shut(c, 0);
}

void relay_chan_abort(struct relay_chan *c, int error)
{
        if (c)
                chan_shut(c, error);
}

struct relay_chan *relay_chan_free(struct relay_chan *c)
{
        if (!c || c->owner_gone)
                return NULL;
        c->owner_gone = true;
        chan_shut(c, 0);
        chan_unref(c);
        return NULL;
}

int relay_chan_fd(struct relay_chan *c)
{
        return c->fd;
}

int relay_chan_hold(struct relay_chan *c, relay_chan_held_fn fn, void *userdata)
{
        if (!fn)
                return -EINVAL;
        if (c->lim.packet)
                return -EOPNOTSUPP;
        if (c->closed || c->closing)
                return -EPIPE;
        if (c->held)
                return -EALREADY;
        c->held = true;
        c->held_told = false;
        c->held_fn = fn;
        c->held_userdata = userdata;
        if (c->rx_armed)
                (void)relay_cancel_op(c->r, &c->rx_op);
        chan_hold_check(c);
        return 0;
}

static void chan_deliver_later(void *userdata)
{
        struct relay_chan *c = userdata;
        int k;

        chan_deliver(c);
        k = c->closed || c->owner_gone ? 0 : chan_rx_arm(c);
        if (k < 0)
                chan_shut(c, k);
        chan_unref(c);
}

void relay_chan_unhold(struct relay_chan *c)
{
        int k;

        if (!c->held)
                return;
        c->held = false;
        if (c->closed)
                return;
        /* What a late receive kept waits for the next turn, as if it had just arrived. */
        if (c->rx_len > 0 && relay_defer(c->r, chan_deliver_later, c) >= 0) {
                c->ref++;
                k = 0;
        } else
                k = chan_rx_arm(c);
        if (k >= 0)
                k = chan_tx_kick(c);
        if (k < 0)
                chan_shut(c, k);
}

static uint8_t *memdup_or_null(const void *p, size_t len, int *error)
{
        uint8_t *d;

        if (len == 0)
                return NULL;
        d = malloc(len);
        if (!d)
                *error = -ENOMEM;
        else
                memcpy(d, p, len);
        return d;
}

static int chan_tx_take(struct relay_chan *c, uint8_t **ret, size_t *ret_len)
{
        size_t len = 0, at = 0;
        uint8_t *buf;

        for (struct chan_frame *f = c->tx_head; f; f = f->next)
                len += f->len - f->off;
        *ret = NULL;
        *ret_len = len;
        if (len == 0)
                return 0;
        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        for (struct chan_frame *f = c->tx_head; f; f = f->next) {
                memcpy(buf + at, f->data + f->off, f->len - f->off);
                at += f->len - f->off;
        }
        *ret = buf;
        return 0;
}

int relay_chan_release(struct relay_chan *c, int *ret_fd, uint8_t **ret_rx, size_t *ret_rx_len, uint8_t **ret_tx,
                       size_t *ret_tx_len)
{
        _cleanup_free_ uint8_t *rx = NULL, *tx = NULL;
        size_t tx_len = 0;
        int k = 0;

        if (!c->held || !c->held_told || c->rx_armed || c->tx_armed || c->closed)
                return -EBUSY;
        rx = memdup_or_null(c->rx + c->rx_off, c->rx_len, &k);
        if (k < 0)
                return k;
        k = chan_tx_take(c, &tx, &tx_len);
        if (k < 0)
                return k;
        *ret_fd = c->fd;
        *ret_rx_len = c->rx_len;
        *ret_rx = TAKE_PTR(rx);
        *ret_tx = TAKE_PTR(tx);
        *ret_tx_len = tx_len;
        /* The fd is the caller's: nothing is in flight on it, so nothing else holds it. */
        c->fd = -1;
        relay_chan_free(c);
        return 0;
}

int relay_chan_adopt(struct relay *r, int fd, const struct relay_chan_ops *ops, const struct relay_chan_limits *lim,
                     const void *rx, size_t rx_len, const void *tx, size_t tx_len, void *userdata,
                     struct relay_chan **ret)
{
        struct relay_chan *c;
        int k;

        if (lim && lim->packet)
                return -EOPNOTSUPP;
        k = chan_alloc(r, fd, ops, lim, rx_len, userdata, &c);
        if (k < 0)
                return k;
        if (tx_len > c->lim.max_tx) {
                chan_alloc_undo(c);
                return -EMSGSIZE;
        }
        if (rx_len > 0)
                memcpy(c->rx, rx, rx_len);
        c->rx_len = rx_len;
        /* Queued before the first send can start: it goes out ahead of anything sent later. */
        if (tx_len > 0) {
                struct chan_frame *f = malloc(sizeof(*f) + tx_len);

                if (!f) {
                        chan_alloc_undo(c);
                        return -ENOMEM;
                }
                *f = (struct chan_frame){ .len = tx_len };
                memcpy(f->data, tx, tx_len);
                c->tx_head = f;
                c->tx_tail = &f->next;
                c->tx_bytes = tx_len;
        }
        /* What was received is delivered on a later turn, before anything read after it. */
        if (rx_len > 0) {
                k = relay_defer(r, chan_deliver_later, c);
                if (k >= 0)
                        c->ref++;
        } else
                k = chan_rx_arm(c);
        if (k >= 0)
                k = chan_tx_kick(c);
        if (k < 0) {
                /* Nothing was submitted yet unless the kick failed after an arm: cancel through shut. */
                if (c->ref > 1 || c->rx_armed) {
                        c->fd = -1;
                        r->n_chans++;
                        relay_chan_free(c);
                } else
                        chan_alloc_undo(c);
                return k;
        }
        r->n_chans++;
        *ret = c;
        return 0;
}
