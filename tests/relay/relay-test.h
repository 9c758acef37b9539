/* tests/relay/relay-test.h: shared helpers of the relay tests (temp dirs, loop-until); owns nothing. */
#pragma once

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
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

/* What relay_set_ops() told the test: how many of each kind, and the last one of each (its
 * strings copied, as they live only during the call). */
struct events_seen {
        unsigned count[_RELAY_EVENT_KIND_MAX];
        struct relay_event last[_RELAY_EVENT_KIND_MAX];
        char path[_RELAY_EVENT_KIND_MAX][128], what[_RELAY_EVENT_KIND_MAX][64], label[_RELAY_EVENT_KIND_MAX][64];
};

static inline void events_on_event(struct relay *r, const struct relay_event *ev, void *userdata)
{
        struct events_seen *e = userdata;

        assert_true(ev->kind >= 0 && ev->kind < _RELAY_EVENT_KIND_MAX);
        e->count[ev->kind]++;
        e->last[ev->kind] = *ev;
        snprintf(e->path[ev->kind], sizeof(e->path[0]), "%s", ev->path ?: "");
        snprintf(e->what[ev->kind], sizeof(e->what[0]), "%s", ev->what ?: "");
        snprintf(e->label[ev->kind], sizeof(e->label[0]), "%s", ev->label ?: "");
}

static inline void events_listen(struct relay *r, struct events_seen *e)
{
        static const struct relay_ops events_ops = { .event = events_on_event };

        *e = (struct events_seen){};
        relay_set_ops(r, &events_ops, e);
}
