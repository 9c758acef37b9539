/* relay/pool.c: the shared receive pool, one provided-buffer ring (group 0) the kernel picks from. */
#include <sys/mman.h>

#include "relay/internal.h"

#define RELAY_POOL_BGID 0
/* The ring is FIFO: the kernel walks every buffer it was given before reusing one. Handing it only
 * what the load needs keeps the walked set (and RSS) small and cache-warm; it grows by doubling. */
#define RELAY_POOL_INITIAL 64u

int relay_pool_init(struct relay *r)
{
        struct io_uring_buf_reg reg = {};
        unsigned n = r->cfg.buf_count;
        void *m;
        int k;

        r->br_size = (size_t) n * sizeof(struct io_uring_buf);
        m = mmap(NULL, r->br_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
                return -errno;
        r->br = m;

        /* Untouched pages stay unbacked: RSS grows only with the buffers actually used. */
        r->bufs_size = (size_t) n * r->cfg.buf_size;
        m = mmap(NULL, r->bufs_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
                k = -errno;
                munmap(r->br, r->br_size);
                r->br = NULL;
                return k;
        }
        r->bufs = m;

        io_uring_buf_ring_init(r->br);
        reg.ring_addr = (uint64_t) (uintptr_t) r->br;
        reg.ring_entries = n;
        reg.bgid = RELAY_POOL_BGID;
        k = io_uring_register_buf_ring(&r->ring, &reg, 0);
        if (k < 0) {
                relay_pool_done(r);
                return k;
        }
        r->buf_mask = io_uring_buf_ring_mask(n);
        r->pool_provided = 0;
        relay_pool_grow(r);
        return 0;
}

void relay_pool_grow(struct relay *r)
{
        unsigned from = r->pool_provided;
        unsigned to = from ? MIN(from * 2, r->cfg.buf_count) : MIN(RELAY_POOL_INITIAL, r->cfg.buf_count);

        for (unsigned i = from; i < to; i++)
                io_uring_buf_ring_add(r->br, relay_pool_addr(r, i), r->cfg.buf_size, (unsigned short) i, r->buf_mask,
                                      (int) (i - from));
        io_uring_buf_ring_advance(r->br, (int) (to - from));
        r->pool_provided = to;
}

void relay_pool_done(struct relay *r)
{
        if (r->bufs)
                munmap(r->bufs, r->bufs_size);
        if (r->br)
                munmap(r->br, r->br_size);
        r->bufs = NULL;
        r->br = NULL;
}

void relay_pool_put(struct relay *r, unsigned bid)
{
        io_uring_buf_ring_add(r->br, relay_pool_addr(r, bid), r->cfg.buf_size, (unsigned short) bid, r->buf_mask, 0);
        io_uring_buf_ring_advance(r->br, 1);
        r->pool_in_use--;
}
