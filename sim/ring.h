/* sim/ring.h: struct sim_ring owns a bounded replay buffer addressed by absolute stream offsets; no I/O, no locking. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct sim_ring {
        uint8_t *buf;
        size_t cap;
        uint64_t head; /* oldest byte still held */
        uint64_t tail; /* one past the newest byte: the total ever produced */
};

int sim_ring_init(struct sim_ring *r, size_t cap);
void sim_ring_done(struct sim_ring *r);

/* Bytes that may be added now without evicting anything at or above `keep_from`. */
size_t sim_ring_room(const struct sim_ring *r, uint64_t keep_from);
/* Contiguous free space at the tail, at most `max` bytes; commit what was filled. */
void sim_ring_write_span(struct sim_ring *r, size_t max, uint8_t **ret_ptr, size_t *ret_len);
void sim_ring_commit(struct sim_ring *r, size_t n);
/* Contiguous held bytes starting at absolute offset `off` (head <= off <= tail). */
void sim_ring_peek(const struct sim_ring *r, uint64_t off, const uint8_t **ret_ptr, size_t *ret_len);
