/* relay/pool.c: the shared receive pool, one provided-buffer ring (group 0) the kernel picks from. */
#include <stdlib.h>
#include <sys/mman.h>

#include "relay/internal.h"

#define RELAY_POOL_BGID 0

/* The kernel's ring is FIFO: it picks the buffer that was handed back longest ago, the coldest in
 * the cache. So the ring only ever holds a few buffers (the ring target), topped up before each
 * io_uring_enter from a LIFO stack of returned buffers: the one just sent is the next one filled,
 * still in cache, and the kernel receives at most the ring target's worth per loop turn before
 * the loop gets to send it. Buffers never used stay untouched (RSS grows only with the load). */
int relay_pool_init(struct relay *r)
{
        struct io_uring_buf_reg reg = {};
        unsigned n = r->cfg.buf_count;
        void *m;
        int k;

        r->pool_free = calloc(n, sizeof(*r->pool_free));
        if (!r->pool_free)
                return -ENOMEM;

        r->br_size = (size_t)n * sizeof(struct io_uring_buf);
        m = mmap(NULL, r->br_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
                k = -errno;
                relay_pool_done(r);
                return k;
        }
        r->br = m;

        r->bufs_size = (size_t)n * r->cfg.buf_size;
        m = mmap(NULL, r->bufs_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
                k = -errno;
                relay_pool_done(r);
                return k;
        }
        r->bufs = m;

        io_uring_buf_ring_init(r->br);
        reg.ring_addr = (uint64_t)(uintptr_t)r->br;
        reg.ring_entries = n;
        reg.bgid = RELAY_POOL_BGID;
        k = io_uring_register_buf_ring(&r->ring, &reg, 0);
        if (k < 0) {
                relay_pool_done(r);
                return k;
        }
        r->buf_mask = io_uring_buf_ring_mask(n);
        r->pool_touched = 0;
        r->pool_free_n = 0;
        r->pool_in_ring = 0;
        relay_pool_refill(r);
        return 0;
}

void relay_pool_refill(struct relay *r)
{
        unsigned added = 0;

        while (r->pool_in_ring + added < r->cfg.ring_bufs) {
                unsigned bid;

                if (r->pool_free_n > 0)
                        bid = r->pool_free[--r->pool_free_n];
                else if (r->pool_touched < r->cfg.buf_count)
                        bid = r->pool_touched++;
                else
                        break;
                io_uring_buf_ring_add(r->br, relay_pool_addr(r, bid), r->cfg.buf_size, (unsigned short)bid, r->buf_mask,
                                      (int)added);
                added++;
        }
        if (added > 0) {
                io_uring_buf_ring_advance(r->br, (int)added);
                r->pool_in_ring += added;
        }
}

void relay_pool_done(struct relay *r)
{
        if (r->bufs)
                munmap(r->bufs, r->bufs_size);
        if (r->br)
                munmap(r->br, r->br_size);
        free(r->pool_free);
        r->bufs = NULL;
        r->br = NULL;
        r->pool_free = NULL;
}

void relay_pool_wait(struct relay *r, struct relay_buf_waiter *w)
{
        if (!relay_buf_waiter_waiting(w))
                list_add_tail(&r->buf_waiters, &w->node);
}

void relay_pool_unwait(struct relay_buf_waiter *w)
{
        list_del(&w->node);
}

void relay_pool_wake_waiters(struct relay *r)
{
        unsigned avail;

        if (list_empty(&r->buf_waiters))
                return;
        relay_pool_refill(r);
        /* One waiter per buffer the kernel can pick, oldest first: waking more would only refill
         * the list with ENOBUFS completions. A waiter's fn may take others off the list (a stream
         * it fails may free them), so the head is read afresh each time. */
        avail = r->pool_in_ring;
        while (!list_empty(&r->buf_waiters) && avail-- > 0) {
                struct relay_buf_waiter *w = list_entry(r->buf_waiters.next, struct relay_buf_waiter, node);

                list_del(&w->node);
                w->fn(w);
        }
}

void relay_pool_put(struct relay *r, unsigned bid)
{
        r->pool_free[r->pool_free_n++] = (uint16_t)bid;
        r->pool_in_use--;
}
