/* relay/splice.h: the zero-copy path of one stream's bulk: owns its poll request and the pipe it
 * borrows from the pool; borrows both fds and its owner (through relay_splice_ops). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "relay/relay.h"

struct relay_pipe;
struct relay_splice;

/* Why the path stopped. It then holds no pipe and has nothing in flight. */
enum relay_splice_stop {
        RELAY_SPLICE_IDLE,       /* the source has fewer than `min` bytes, or may_read said no */
        RELAY_SPLICE_SRC_END,    /* the source ended: error 0 (EOF) or -errno; all it gave was delivered */
        RELAY_SPLICE_DST_FAILED, /* the endpoint failed (error); what our pipe held is dropped */
        RELAY_SPLICE_NO_PIPE,    /* the pool lent every pipe: nothing was moved */
        RELAY_SPLICE_REFUSED,    /* the kernel cannot splice these files: nothing was moved */
        RELAY_SPLICE_SMALL,      /* the source's backlog is in small segments: the ring reads them in
                                  * fewer calls; all that was spliced was delivered */
        _RELAY_SPLICE_STOP_MAX,
        _RELAY_SPLICE_STOP_INVALID = -EINVAL,
};

struct relay_splice_ops {
        /* Asked once before each run of reads from the source (a freeze, an attach client: no). */
        bool (*may_read)(struct relay_splice *sp);
        /* rx bytes read from the source, tx written to the endpoint. */
        void (*moved)(struct relay_splice *sp, size_t rx, size_t tx);
        /* Once per relay_splice_start; the owner may free itself from here (it holds a ref). */
        void (*stopped)(struct relay_splice *sp, enum relay_splice_stop why, int error);
        /* One reference on the owner per request in flight or queued call. */
        void (*ref)(struct relay_splice *sp);
        void (*unref)(struct relay_splice *sp);
};

enum relay_splice_state {
        RELAY_SPLICE_OFF,      /* not on this path */
        RELAY_SPLICE_PUMPING,  /* moving bytes, or a deferred pump queued for the next turn */
        RELAY_SPLICE_WAIT_SRC, /* our pipe empty and returned: a poll waits for the source */
        RELAY_SPLICE_WAIT_DST, /* bytes in our pipe (or the fifo full): a poll waits for POLLOUT */
        _RELAY_SPLICE_STATE_MAX,
        _RELAY_SPLICE_STATE_INVALID = -EINVAL,
};

/* Embedded in its owner; fields are private to splice.c. */
struct relay_splice {
        struct relay *r;
        const struct relay_splice_ops *ops;
        int src, dst;
        bool direct; /* the endpoint is a fifo: when the pool has no pipe, one splice straight in */
        size_t min;
        enum relay_splice_state state;
        bool poll_armed; /* the poll request (either kind) has not completed yet */
        bool cancelled;  /* a cancel for it is out */
        bool queued;     /* a deferred pump is queued */
        struct relay_op poll_op;
        struct relay_pipe *pipe;
        size_t in_pipe;
        bool small; /* a read found the backlog in small segments: stop once our pipe is empty */
};

/* direct: dst is a pipe or fifo, which may take splices straight from src. min: readable bytes that
 * keep the path after a quiet spell. */
void relay_splice_init(struct relay_splice *sp, struct relay *r, const struct relay_splice_ops *ops, bool direct,
                       size_t min);
/* Moves bytes now, from the loop (never io-wq); stopped() follows sooner or later. 0 or -errno
 * (the ring is broken: nothing started). */
int relay_splice_start(struct relay_splice *sp, int src, int dst);
/* may_read changed to no: a poll waiting for the source is cancelled, so stopped() comes soon. */
void relay_splice_reading_stopped(struct relay_splice *sp);
/* Ends the path now, dropping what our pipe holds; no callback after. Idempotent. */
void relay_splice_abort(struct relay_splice *sp);
bool relay_splice_active(const struct relay_splice *sp);
/* Bytes read from the source and not yet at the endpoint. */
size_t relay_splice_held(const struct relay_splice *sp);
