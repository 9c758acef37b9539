/* bench/pattern.c: xorshift64* fill and memcmp-speed checking, so the checker is never the bottleneck. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bench/pattern.h"

int bench_pattern_init(struct bench_pattern *p)
{
        size_t len = BENCH_PATTERN_PERIOD + BENCH_PATTERN_SLICE_MAX;
        uint64_t x = 0x9E3779B97F4A7C15ull;

        p->buf = malloc(len);
        if (!p->buf)
                return -ENOMEM;
        for (size_t i = 0; i < BENCH_PATTERN_PERIOD; i++) {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                p->buf[i] = (uint8_t)((x * 0x2545F4914F6CDD1Dull) >> 56);
        }
        memcpy(p->buf + BENCH_PATTERN_PERIOD, p->buf, BENCH_PATTERN_SLICE_MAX);
        return 0;
}

void bench_pattern_done(struct bench_pattern *p)
{
        free(p->buf);
        p->buf = NULL;
}

int bench_pattern_check(const struct bench_pattern *p, unsigned id, uint64_t pos, const void *data, size_t len,
                        uint64_t *ret_bad)
{
        const uint8_t *want = bench_pattern_at(p, id, pos), *got = data;

        if (memcmp(want, got, len) == 0)
                return 0;
        for (size_t i = 0; i < len; i++)
                if (want[i] != got[i]) {
                        *ret_bad = pos + i;
                        break;
                }
        return -EBADMSG;
}
