/* The simulator's replay window: room, eviction and wrap-around by absolute offsets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "sim/ring.h"

#define MIN_ROOM(r, keep, len) (sim_ring_room((r), (keep)) < (len) ? sim_ring_room((r), (keep)) : (len))

static void fill(struct sim_ring *r, const char *text, uint64_t keep_from)
{
        size_t len = strlen(text);

        while (len > 0) {
                uint8_t *span;
                size_t n;

                sim_ring_write_span(r, MIN_ROOM(r, keep_from, len), &span, &n);
                assert_true(n > 0);
                memcpy(span, text, n);
                sim_ring_commit(r, n);
                text += n;
                len -= n;
        }
}

static void test_room_never_evicts_bytes_at_or_above_keep_from(void **state)
{
        struct sim_ring r;

        assert_int_equal(sim_ring_init(&r, 8), 0);
        assert_int_equal(sim_ring_room(&r, 0), 8);
        fill(&r, "abcdef", 0);
        /* Nothing confirmed: only the 2 free bytes. */
        assert_int_equal(sim_ring_room(&r, 0), 2);
        /* Confirmed up to 4: bytes 0..3 may go. */
        assert_int_equal(sim_ring_room(&r, 4), 6);
        /* keep_from beyond the tail is clamped to the tail. */
        assert_int_equal(sim_ring_room(&r, 100), 8);
        sim_ring_done(&r);
}

static void test_commit_evicts_oldest_and_wraps(void **state)
{
        struct sim_ring r;
        const uint8_t *p;
        size_t n;

        assert_int_equal(sim_ring_init(&r, 8), 0);
        fill(&r, "abcdef", 6);
        fill(&r, "ghij", 6);
        assert_int_equal(r.tail, 10);
        assert_int_equal(r.head, 2);
        /* From offset 2: "cdefgh" up to the physical end, then "ij" after the wrap. */
        sim_ring_peek(&r, 2, &p, &n);
        assert_int_equal(n, 6);
        assert_memory_equal(p, "cdefgh", 6);
        sim_ring_peek(&r, 8, &p, &n);
        assert_int_equal(n, 2);
        assert_memory_equal(p, "ij", 2);
        sim_ring_peek(&r, 10, &p, &n);
        assert_int_equal(n, 0);
        sim_ring_done(&r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_room_never_evicts_bytes_at_or_above_keep_from),
                cmocka_unit_test(test_commit_evicts_oldest_and_wraps),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
