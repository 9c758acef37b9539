/* relay/internal.h: shared internals of relay/ (loop, pool, listeners, streams); nothing outside relay/ includes it. */
#pragma once

#include "relay/probe.h"
#include "relay/relay.h"
#include "relay/vsock-route.h"
#include "util/list.h"

/* Free pool buffers offered to the kernel at a time (see pool.c); measured in the bench's B2. */
#define RELAY_RING_BUFS_DEFAULT 16u
/* Completions copied out of the CQ per pass, so handlers may submit while we iterate. */
#define RELAY_CQE_BATCH 64

struct relay_defer_node {
        struct list_head node;
        void (*fn)(void *userdata);
        void *userdata;
};

struct relay_vsock_port;

/* Where *at() calls find a hybrid-vsock socket file: for daemon/paths.c's "/proc/self/fd/N/name"
 * form, directory N and name, so they skip the walk through /proc; else AT_FDCWD and path. The
 * name points into path. */
void relay_hvsock_path_at(const char *path, int *ret_dirfd, const char **ret_name);

/* A reader whose receive stopped on an empty pool. The pool calls fn once buffers can be picked
 * again, oldest waiter first, one waiter per buffer the kernel can pick; the waiter is off the
 * list by then. Embedded in its owner; the pool knows nothing else of it. */
struct relay_buf_waiter {
        struct list_head node; /* self-linked while not waiting */
        void (*fn)(struct relay_buf_waiter *w);
};

struct relay {
        struct io_uring ring;
        struct relay_config cfg;
        bool stop;
        bool broken;
        bool fds_shared;             /* relay_set_fds_shared(): another process serves these sockets too */
        const struct relay_ops *ops; /* relay_set_ops(), or NULL */
        void *ops_userdata;
        unsigned last_dispatched; /* completions the last turn handled: relay_free drains to 0 */
        /* relay_stats' turn counters */
        uint64_t turns, turns_waited, cqes;
        uint64_t cqes_per_turn[RELAY_STATS_CQE_BUCKETS];
        uint64_t nvcsw_start; /* the loop thread's voluntary switches at relay_new() */
        uint64_t wait_ns;     /* relay_stats' */

        /* provided-buffer pool, group 0 */
        struct io_uring_buf_ring *br;
        size_t br_size;
        uint8_t *bufs;
        size_t bufs_size;
        unsigned buf_mask;
        unsigned pool_in_use;  /* held by streams */
        unsigned pool_in_ring; /* in the kernel's ring, not yet picked */
        unsigned pool_touched; /* buffers ever used: ids [0, pool_touched) */
        uint16_t *pool_free;   /* returned buffers, the most recently returned on top */
        unsigned pool_free_n;
        int mshot_limit; /* recv multishot byte budget (sqe->optlen): 1 works, 0 refused, -1 untested (probe.c) */
        struct relay_features features; /* what relay_new()'s probe found */

        struct list_head defers; /* struct relay_defer_node, in queue order */

        struct relay_timer **heap;
        unsigned heap_n, heap_cap;

        struct list_head buf_waiters; /* struct relay_buf_waiter, oldest first */

        struct relay_vsock_port *vsock_ports;

        /* pipe-pool.c: empty pipes between loans */
        struct relay_pipe *pipes_free;
        unsigned pipes_made, pipes_lent;
        struct relay_timer *pipes_idle;         /* closes borrowed pipes once none was lent for a while */
        uint64_t pipes_loans, pipes_loans_seen; /* loans so far, and at the timer's arming */
        uint64_t bytes_spliced;

        unsigned n_streams, n_listeners, n_chans;
        uint64_t bytes_relayed;
        unsigned capacity;
};

/* probe.c learns these; every receive asks. */
static inline bool relay_recv_budget_usable(const struct relay *r)
{
        return r->mshot_limit != 0;
}
static inline bool relay_recv_budget_known(const struct relay *r)
{
        return r->mshot_limit >= 0;
}

/* pool.c */
int relay_pool_init(struct relay *r);
void relay_pool_done(struct relay *r);
static inline uint8_t *relay_pool_addr(struct relay *r, unsigned bid)
{
        return r->bufs + (size_t)bid * r->cfg.buf_size;
}
void relay_pool_put(struct relay *r, unsigned bid);
/* Tops the kernel's ring up to cfg.ring_bufs; called before every io_uring_enter. */
void relay_pool_refill(struct relay *r);
/* Takes the buffer a completion consumed into the caller's hands. */
static inline void relay_pool_took(struct relay *r)
{
        r->pool_in_use++;
        r->pool_in_ring--;
}

static inline void relay_buf_waiter_init(struct relay_buf_waiter *w, void (*fn)(struct relay_buf_waiter *w))
{
        list_init(&w->node);
        w->fn = fn;
}
static inline bool relay_buf_waiter_waiting(const struct relay_buf_waiter *w)
{
        return !list_empty(&w->node);
}
/* Both idempotent. */
void relay_pool_wait(struct relay *r, struct relay_buf_waiter *w);
void relay_pool_unwait(struct relay_buf_waiter *w);
/* Called by the loop after completions: buffers may have come back. */
void relay_pool_wake_waiters(struct relay *r);

/* timer.c */
uint64_t relay_timers_next_deadline(struct relay *r); /* UINT64_MAX if none */
void relay_timers_run(struct relay *r);
void relay_timers_done(struct relay *r);

void relay_listeners_done(struct relay *r);

/* pipe-pool.c: a pipe lent to one stream while it has bytes in flight on the splice path. */
struct relay_pipe {
        int rfd, wfd;
        size_t size;
        struct relay_pipe *next;
};
/* -EBUSY when every pipe the fds allow is lent. */
int relay_pipe_get(struct relay *r, struct relay_pipe **ret);
/* Returns NULL. A pipe that still holds bytes is closed, not lent again. */
struct relay_pipe *relay_pipe_put(struct relay *r, struct relay_pipe *p, bool empty);
/* A stream or listener came: free pipes over what the fds now allow are closed. */
void relay_pipes_trim(struct relay *r);
void relay_pipes_done(struct relay *r);

/* Tells the owner (relay_set_ops), if it listens. */
void relay_emit(struct relay *r, const struct relay_event *ev);

/* Ignores the completion of a cancel issued for op. */
int relay_cancel_op(struct relay *r, struct relay_op *op);
/* Closes an fd that queued SQEs may name: they are submitted first, so each takes its own
 * reference to the file and a new fd reusing the number is never mistaken for it. A socket is
 * shut down first, so its peer sees the close at once. Returns -1. */
int relay_close_fd(struct relay *r, int fd);
