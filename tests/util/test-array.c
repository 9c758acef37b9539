/* tests/util/test-array.c: array_reserve_one's doubling, and what it leaves alone when it cannot grow. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "util/array.h"

static void test_an_empty_array_gets_min_cap_then_doubles_keeping_what_it_held(void **state)
{
        uint32_t *a = NULL;
        size_t n = 0, cap = 0;

        (void)state;
        for (uint32_t i = 0; i < 100; i++) {
                assert_int_equal(ARRAY_RESERVE_ONE(a, n, cap, 4), 0);
                assert_true(cap > n);
                a[n++] = i;
                if (n <= 4)
                        assert_int_equal(cap, 4);
        }
        assert_int_equal(cap, 128);
        for (uint32_t i = 0; i < 100; i++)
                assert_int_equal(a[i], i);
        free(a);
}

static void test_room_left_changes_nothing(void **state)
{
        uint32_t *a = calloc(8, sizeof(*a)), *before = a;
        size_t cap = 8;

        (void)state;
        assert_non_null(a);
        assert_int_equal(ARRAY_RESERVE_ONE(a, 7, cap, 4), 0);
        assert_ptr_equal(a, before);
        assert_int_equal(cap, 8);
        free(a);
}

static void test_a_size_that_would_overflow_is_refused_and_leaves_the_array(void **state)
{
        uint64_t *a = calloc(1, sizeof(*a)), *before = a;
        size_t cap = SIZE_MAX / 2 + 1;

        (void)state;
        assert_non_null(a);
        assert_int_equal(ARRAY_RESERVE_ONE(a, cap, cap, 4), -ENOMEM);
        assert_ptr_equal(a, before);
        assert_int_equal(cap, SIZE_MAX / 2 + 1);
        cap = SIZE_MAX / 4;
        assert_int_equal(ARRAY_RESERVE_ONE(a, cap, cap, 4), -ENOMEM); /* twice cap elements of 8 bytes */
        assert_ptr_equal(a, before);
        assert_int_equal(cap, SIZE_MAX / 4);
        free(a);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_an_empty_array_gets_min_cap_then_doubles_keeping_what_it_held),
                cmocka_unit_test(test_room_left_changes_nothing),
                cmocka_unit_test(test_a_size_that_would_overflow_is_refused_and_leaves_the_array),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
