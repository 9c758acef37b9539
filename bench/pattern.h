/* bench/pattern.h: the seeded byte pattern every stream carries and its checker; owns the pattern buffer. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* A prime period, so a chunk delivered at the wrong offset (reorder, loss, duplicate) never lines up. */
#define BENCH_PATTERN_PERIOD 1048573u
/* Largest slice one call may ask for: the buffer repeats this much past the period. */
#define BENCH_PATTERN_SLICE_MAX (256u << 10)

struct bench_pattern {
        uint8_t *buf; /* BENCH_PATTERN_PERIOD + BENCH_PATTERN_SLICE_MAX bytes */
};

int bench_pattern_init(struct bench_pattern *p);
void bench_pattern_done(struct bench_pattern *p);

/* The bytes stream `id` carries at offset `pos`; len <= BENCH_PATTERN_SLICE_MAX. */
static inline const uint8_t *bench_pattern_at(const struct bench_pattern *p, unsigned id, uint64_t pos)
{
        uint64_t start = ((uint64_t)id * 2654435761u + 12345u) % BENCH_PATTERN_PERIOD;

        return p->buf + (start + pos) % BENCH_PATTERN_PERIOD;
}

/* 0 when data is exactly what stream id carries at pos; else -EBADMSG and *ret_bad the first bad offset. */
int bench_pattern_check(const struct bench_pattern *p, unsigned id, uint64_t pos, const void *data, size_t len,
                        uint64_t *ret_bad);
