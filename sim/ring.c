/* sim/ring.c: a bounded replay buffer addressed by absolute stream offsets. */
#include "sim/ring.h"

#include <errno.h>
#include <stdlib.h>

#include "util/macro.h"

int sim_ring_init(struct sim_ring *r, size_t cap)
{
        *r = (struct sim_ring){ .cap = cap };
        r->buf = malloc(cap);
        return r->buf ? 0 : -ENOMEM;
}

void sim_ring_done(struct sim_ring *r)
{
        free(r->buf);
        *r = (struct sim_ring){};
}

size_t sim_ring_room(const struct sim_ring *r, uint64_t keep_from)
{
        uint64_t keep = MAX(r->head, MIN(keep_from, r->tail));

        return r->cap - (size_t)(r->tail - keep);
}

void sim_ring_write_span(struct sim_ring *r, size_t max, uint8_t **ret_ptr, size_t *ret_len)
{
        size_t at = (size_t)(r->tail % r->cap);

        *ret_ptr = r->buf + at;
        *ret_len = MIN(max, r->cap - at);
}

void sim_ring_commit(struct sim_ring *r, size_t n)
{
        r->tail += n;
        if (r->tail - r->head > r->cap)
                r->head = r->tail - r->cap;
}

void sim_ring_peek(const struct sim_ring *r, uint64_t off, const uint8_t **ret_ptr, size_t *ret_len)
{
        size_t at = (size_t)(off % r->cap);

        *ret_ptr = r->buf + at;
        *ret_len = (size_t)MIN(r->tail - off, (uint64_t)(r->cap - at));
}
