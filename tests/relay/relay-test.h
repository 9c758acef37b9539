/* tests/relay/relay-test.h: shared helpers of the relay tests (temp dirs, loop-until); owns nothing. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include "relay/relay.h"

/* Generous: tests run on a loaded 2-core machine under ASan; this only bounds a hang. */
#define TEST_WAIT_NS (60ull * 1000 * 1000 * 1000)

/* Runs the loop until *flag is true; fails the test if that takes longer than TEST_WAIT_NS. */
static inline void run_until(struct relay *r, const bool *flag)
{
        uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS;

        while (!*flag) {
                assert_int_equal(relay_run_once(r, 100 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
        }
}

/* Runs the loop until counter reaches want. */
static inline void run_until_count(struct relay *r, const unsigned *counter, unsigned want)
{
        uint64_t deadline = relay_now_ns(r) + TEST_WAIT_NS;

        while (*counter < want) {
                assert_int_equal(relay_run_once(r, 100 * 1000 * 1000), 0);
                assert_true(relay_now_ns(r) < deadline);
        }
}

/* A few idle turns so cancels and deferred calls land. */
static inline void run_idle(struct relay *r, int turns)
{
        for (int i = 0; i < turns; i++)
                assert_int_equal(relay_run_once(r, 1000 * 1000), 0);
}
