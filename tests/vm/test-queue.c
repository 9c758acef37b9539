/* tests/vm/test-queue.c: the migration event queue and its eventfd, without libvirt. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>

#include "vm/queue.h"

static bool readable(const struct vm_event_queue *q)
{
        struct pollfd pfd = { .fd = q->fd, .events = POLLIN };

        return poll(&pfd, 1, 0) == 1;
}

static struct vm_migration_event ev(enum vm_migration_event_kind k, int iteration)
{
        return (struct vm_migration_event){ .kind = k, .iteration = iteration };
}

static void test_fd_is_readable_exactly_while_events_are_queued(void **state)
{
        struct vm_event_queue q;
        struct vm_migration_event e, a = ev(VM_MIGRATION_EVENT_ITERATION, 1), b = ev(VM_MIGRATION_EVENT_SUSPENDED, 0);

        assert_int_equal(vm_event_queue_init(&q), 0);
        assert_false(readable(&q));
        assert_int_equal(vm_event_queue_pop(&q, &e), -EAGAIN);
        assert_true(vm_event_queue_push(&q, &a));
        assert_true(readable(&q));
        assert_true(vm_event_queue_push(&q, &b));
        assert_int_equal(vm_event_queue_pop(&q, &e), 0);
        assert_int_equal(e.kind, VM_MIGRATION_EVENT_ITERATION);
        assert_true(readable(&q));
        assert_int_equal(vm_event_queue_pop(&q, &e), 0);
        assert_int_equal(e.kind, VM_MIGRATION_EVENT_SUSPENDED);
        assert_false(readable(&q));
        assert_int_equal(vm_event_queue_pop(&q, &e), -EAGAIN);
        vm_event_queue_done(&q);
        assert_int_equal(q.fd, -1);
}

static void test_progress_is_dropped_near_full_but_lifecycle_and_terminal_are_kept(void **state)
{
        struct vm_event_queue q;
        struct vm_migration_event e, p = ev(VM_MIGRATION_EVENT_PROGRESS, 0), s = ev(VM_MIGRATION_EVENT_SUSPENDED, 0),
                                     done = ev(VM_MIGRATION_EVENT_COMPLETED, 0);
        unsigned queued = 0;

        assert_int_equal(vm_event_queue_init(&q), 0);
        /* A caller that never drains: progress stops at the reserve... */
        for (unsigned i = 0; i < VM_MIGRATION_QUEUE_MAX; i++)
                queued += vm_event_queue_push(&q, &p);
        assert_int_equal(queued, VM_MIGRATION_QUEUE_MAX - VM_QUEUE_RESERVED);
        /* ...which still holds the events that matter. */
        assert_true(vm_event_queue_push(&q, &s));
        assert_true(vm_event_queue_push(&q, &done));
        for (unsigned i = 0; i < queued; i++) {
                assert_int_equal(vm_event_queue_pop(&q, &e), 0);
                assert_int_equal(e.kind, VM_MIGRATION_EVENT_PROGRESS);
        }
        assert_int_equal(vm_event_queue_pop(&q, &e), 0);
        assert_int_equal(e.kind, VM_MIGRATION_EVENT_SUSPENDED);
        assert_int_equal(vm_event_queue_pop(&q, &e), 0);
        assert_int_equal(e.kind, VM_MIGRATION_EVENT_COMPLETED);
        vm_event_queue_done(&q);
}

static void test_terminal_event_is_the_last_and_then_the_queue_reports_its_end(void **state)
{
        struct vm_event_queue q;
        struct vm_migration_event e, aborted = ev(VM_MIGRATION_EVENT_ABORTED, 0),
                                     late = ev(VM_MIGRATION_EVENT_SOURCE_STOPPED, 0),
                                     completed = ev(VM_MIGRATION_EVENT_COMPLETED, 0);

        assert_int_equal(vm_event_queue_init(&q), 0);
        assert_true(vm_event_queue_push(&q, &aborted));
        assert_false(vm_event_queue_push(&q, &late));
        assert_false(vm_event_queue_push(&q, &completed));
        assert_int_equal(vm_event_queue_pop(&q, &e), 0);
        assert_int_equal(e.kind, VM_MIGRATION_EVENT_ABORTED);
        assert_false(readable(&q));
        assert_int_equal(vm_event_queue_pop(&q, &e), -ENODATA);
        assert_int_equal(vm_event_queue_pop(&q, &e), -ENODATA);
        vm_event_queue_done(&q);
}

static void test_order_is_kept_across_the_ring_wrap(void **state)
{
        struct vm_event_queue q;
        struct vm_migration_event e;
        int next_in = 0, next_out = 0;

        assert_int_equal(vm_event_queue_init(&q), 0);
        /* Keep ~100 queued while pushing several ring lengths through. */
        for (int round = 0; round < 10 * (int)VM_MIGRATION_QUEUE_MAX; round++) {
                struct vm_migration_event it = ev(VM_MIGRATION_EVENT_ITERATION, next_in);

                assert_true(vm_event_queue_push(&q, &it));
                next_in++;
                if (next_in - next_out > 100) {
                        assert_int_equal(vm_event_queue_pop(&q, &e), 0);
                        assert_int_equal(e.iteration, next_out);
                        next_out++;
                }
        }
        while (vm_event_queue_pop(&q, &e) == 0)
                assert_int_equal(e.iteration, next_out++);
        assert_int_equal(next_out, next_in);
        vm_event_queue_done(&q);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fd_is_readable_exactly_while_events_are_queued),
                cmocka_unit_test(test_progress_is_dropped_near_full_but_lifecycle_and_terminal_are_kept),
                cmocka_unit_test(test_terminal_event_is_the_last_and_then_the_queue_reports_its_end),
                cmocka_unit_test(test_order_is_kept_across_the_ring_wrap),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
