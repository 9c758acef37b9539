/* tests/bridge/test-calls.c: the call table: ids, exactly-once completion, loss, timeouts and zombies, pre-registration. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <cmocka.h>

#include "bridge/calls.h"
#include "bridge/codec.h"
#include "bridge/held.h"

struct done {
        int count;
        struct bridge_result last;
};

static void on_done(const struct bridge_result *res, void *userdata)
{
        struct done *d = userdata;

        d->count++;
        d->last = *res;
}

static void test_seed_next_id_only_raises(void **state)
{
        _cleanup_(bridge_calls_freep) struct bridge_calls *t = NULL;
        struct bridge_call *c;
        struct done d = {};

        assert_int_equal(bridge_calls_new(&t), 0);
        assert_int_equal(bridge_calls_next_id(t), 0);
        assert_int_equal(bridge_calls_seed_next_id(t, 100), 0);
        assert_int_equal(bridge_calls_seed_next_id(t, 100), 0);
        assert_int_equal(bridge_calls_seed_next_id(t, 99), -ERANGE);
        assert_int_equal(bridge_calls_seed_next_id(t, 0), -ERANGE);
        assert_int_equal(bridge_calls_next_id(t), 100);
        assert_int_equal(
                bridge_calls_add(t, BRIDGE_RPC_SIGNAL_PROCESS, 0, BRIDGE_DEADLINE_NONE, "c", 1, on_done, &d, &c), 0);
        assert_int_equal(c->id, 100);
        assert_int_equal(bridge_calls_next_id(t), 101);
        bridge_calls_fail_all(t, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", false);
}

static void test_response_completes_exactly_once(void **state)
{
        _cleanup_(bridge_calls_freep) struct bridge_calls *t = NULL;
        struct bridge_call *c;
        struct done d = {};
        struct bridge_result ok = { .status = BRIDGE_STATUS_OK, .exit_code = 7 };
        uint64_t id;

        assert_int_equal(bridge_calls_new(&t), 0);
        assert_int_equal(bridge_calls_add(t, BRIDGE_RPC_WAIT_FOR_PROCESS, 0, 1000, "c", 1, on_done, &d, &c), 0);
        id = c->id;
        bridge_calls_complete(t, c, &ok, true);
        assert_int_equal(d.count, 1);
        assert_int_equal(d.last.exit_code, 7);
        assert_int_equal(d.last.call_id, id);
        /* Neither a loss nor the deadline reaches it again; its id is now a zombie. */
        assert_null(bridge_calls_get(t, id));
        assert_true(bridge_calls_is_zombie(t, id));
        assert_int_equal(bridge_calls_expire(t, 5000), 0);
        assert_int_equal(bridge_calls_fail_all(t, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", false), 0);
        assert_int_equal(d.count, 1);
        assert_false(bridge_calls_is_zombie(t, id));
}

static void test_loss_completes_every_call_once(void **state)
{
        _cleanup_(bridge_calls_freep) struct bridge_calls *t = NULL;
        struct bridge_call *c;
        struct done d[3] = {};

        assert_int_equal(bridge_calls_new(&t), 0);
        for (int i = 0; i < 3; i++)
                assert_int_equal(bridge_calls_add(t, BRIDGE_RPC_EXECUTE_PROCESS, 0, i == 0 ? 10 : BRIDGE_DEADLINE_NONE,
                                                  NULL, 0, on_done, &d[i], &c),
                                 0);
        assert_int_equal(bridge_calls_fail_all(t, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", false), 3);
        for (int i = 0; i < 3; i++) {
                assert_int_equal(d[i].count, 1);
                assert_int_equal(d[i].last.error, -ENOTCONN);
                assert_int_equal(d[i].last.status, BRIDGE_STATUS_CLOSED);
                assert_string_equal(d[i].last.message, "bridge closed");
        }
        assert_int_equal(bridge_calls_expire(t, 100), 0);
        assert_int_equal(bridge_calls_count(t), 0);
        assert_int_equal(d[0].count, 1);
}

static void test_fail_all_can_keep_zombies_for_late_answers(void **state)
{
        _cleanup_(bridge_calls_freep) struct bridge_calls *t = NULL;
        struct bridge_call *c;
        struct done d = {};
        uint64_t id;

        assert_int_equal(bridge_calls_new(&t), 0);
        assert_int_equal(
                bridge_calls_add(t, BRIDGE_RPC_WAIT_FOR_PROCESS, 0, BRIDGE_DEADLINE_NONE, "c", 1, on_done, &d, &c), 0);
        id = c->id;
        assert_int_equal(bridge_calls_fail_all(t, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", true), 1);
        assert_int_equal(d.count, 1);
        assert_true(bridge_calls_is_zombie(t, id));
        assert_int_equal(bridge_calls_fail_all(t, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", false), 0);
        assert_false(bridge_calls_is_zombie(t, id));
        assert_int_equal(d.count, 1);
}

static void test_timeout_completes_once_and_late_reply_is_a_zombie(void **state)
{
        _cleanup_(bridge_calls_freep) struct bridge_calls *t = NULL;
        struct bridge_call *c;
        struct done a = {}, b = {}, w = {};
        uint64_t id_a;

        assert_int_equal(bridge_calls_new(&t), 0);
        assert_int_equal(bridge_calls_add(t, BRIDGE_RPC_SIGNAL_PROCESS, 0, 300, NULL, 0, on_done, &b, &c), 0);
        assert_int_equal(bridge_calls_add(t, BRIDGE_RPC_CREATE, 0, 200, NULL, 0, on_done, &a, &c), 0);
        id_a = c->id;
        assert_int_equal(
                bridge_calls_add(t, BRIDGE_RPC_WAIT_FOR_PROCESS, 0, BRIDGE_DEADLINE_NONE, "c", 4, on_done, &w, &c), 0);
        assert_int_equal(bridge_calls_next_deadline(t), 200);
        assert_int_equal(bridge_calls_expire(t, 199), 0);
        assert_int_equal(bridge_calls_expire(t, 250), 1);
        assert_int_equal(a.count, 1);
        assert_int_equal(a.last.status, BRIDGE_STATUS_TIMEOUT);
        assert_int_equal(a.last.error, -ETIMEDOUT);
        assert_true(bridge_calls_is_zombie(t, id_a));
        assert_int_equal(bridge_calls_next_deadline(t), 300);
        assert_int_equal(bridge_calls_expire(t, UINT64_MAX - 1), 1);
        assert_int_equal(b.count, 1);
        /* A wait has no deadline: it never times out. */
        assert_int_equal(bridge_calls_next_deadline(t), BRIDGE_DEADLINE_NONE);
        assert_int_equal(w.count, 0);
        assert_true(bridge_calls_forget_zombie(t, id_a));
        assert_false(bridge_calls_forget_zombie(t, id_a));
        bridge_calls_fail_all(t, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", false);
        assert_int_equal(w.count, 1);
        assert_int_equal(a.count, 1);
}

static void test_preregister_twice_returns_existing_call(void **state)
{
        _cleanup_(bridge_calls_freep) struct bridge_calls *t = NULL;
        struct bridge_call *c1, *c2;
        struct done d1 = {}, d2 = {};

        assert_int_equal(bridge_calls_new(&t), 0);
        assert_int_equal(bridge_calls_preregister(t, 42, BRIDGE_RPC_WAIT_FOR_PROCESS, "c", 9, on_done, &d1, &c1), 0);
        assert_int_equal(bridge_calls_preregister(t, 42, BRIDGE_RPC_WAIT_FOR_PROCESS, "c", 9, on_done, &d2, &c2), 1);
        assert_ptr_equal(c1, c2);
        assert_true(c1->flags & BRIDGE_CALL_ADOPTED);
        assert_int_equal(bridge_calls_count(t), 1);
        /* New ids never collide with the adopted one. */
        assert_int_equal(bridge_calls_next_id(t), 43);
        assert_int_equal(bridge_calls_seed_next_id(t, 42), -ERANGE);
        bridge_calls_fail_all(t, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", false);
        assert_int_equal(d1.count, 1);
        assert_int_equal(d2.count, 0);
}

struct reentrant {
        struct bridge_calls *t;
        int count;
        int added;
};

static void on_done_adds_another(const struct bridge_result *res, void *userdata)
{
        struct reentrant *re = userdata;
        struct bridge_call *c;

        re->count++;
        if (re->added++ == 0)
                assert_int_equal(bridge_calls_add(re->t, BRIDGE_RPC_SIGNAL_PROCESS, 0, BRIDGE_DEADLINE_NONE, NULL, 0,
                                                  on_done_adds_another, re, &c),
                                 0);
}

static void test_fail_all_also_fails_calls_added_by_callbacks(void **state)
{
        _cleanup_(bridge_calls_freep) struct bridge_calls *t = NULL;
        struct bridge_call *c;
        struct reentrant re = {};

        assert_int_equal(bridge_calls_new(&t), 0);
        re.t = t;
        assert_int_equal(bridge_calls_add(t, BRIDGE_RPC_SIGNAL_PROCESS, 0, BRIDGE_DEADLINE_NONE, NULL, 0,
                                          on_done_adds_another, &re, &c),
                         0);
        assert_int_equal(bridge_calls_fail_all(t, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", false), 2);
        assert_int_equal(re.count, 2);
        assert_int_equal(bridge_calls_count(t), 0);
}

static void test_thousands_of_waits_are_found_by_id(void **state)
{
        _cleanup_(bridge_calls_freep) struct bridge_calls *t = NULL;
        struct bridge_call *c;
        struct done d = {};
        const unsigned n = 20000;

        assert_int_equal(bridge_calls_new(&t), 0);
        assert_int_equal(bridge_calls_seed_next_id(t, 1000000), 0);
        for (unsigned i = 0; i < n; i++) {
                assert_int_equal(bridge_calls_add(t, BRIDGE_RPC_WAIT_FOR_PROCESS, 0,
                                                  i % 2 ? BRIDGE_DEADLINE_NONE : (uint64_t)(n - i), "c", i, on_done, &d,
                                                  &c),
                                 0);
                assert_int_equal(bridge_calls_preregister(t, i, BRIDGE_RPC_WAIT_FOR_PROCESS, "c", i, on_done, &d, &c),
                                 0);
        }
        assert_int_equal(bridge_calls_count(t), 2 * n);
        for (unsigned i = 0; i < n; i++) {
                c = bridge_calls_get(t, 1000000 + i);
                assert_non_null(c);
                assert_int_equal(c->pid, i);
                assert_non_null(bridge_calls_get(t, i));
        }
        /* The heap hands deadlines back in order. */
        assert_int_equal(bridge_calls_next_deadline(t), 2);
        assert_int_equal(bridge_calls_expire(t, 1000), 500);
        assert_int_equal(d.count, 500);
        assert_int_equal(bridge_calls_zombie_count(t), 500);
        assert_int_equal(bridge_calls_next_deadline(t), 1002);
        assert_int_equal(bridge_calls_fail_all(t, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", false),
                         2 * n - 500);
        assert_int_equal(d.count, 2 * n);
}

static void test_zombies_are_bounded(void **state)
{
        _cleanup_(bridge_calls_freep) struct bridge_calls *t = NULL;
        struct bridge_call *c;
        struct done d = {};
        struct bridge_result ok = { .status = BRIDGE_STATUS_OK };

        assert_int_equal(bridge_calls_new(&t), 0);
        for (unsigned i = 0; i < BRIDGE_CALLS_MAX_ZOMBIES + 10; i++) {
                assert_int_equal(bridge_calls_add(t, BRIDGE_RPC_SIGNAL_PROCESS, 0, BRIDGE_DEADLINE_NONE, NULL, 0,
                                                  on_done, &d, &c),
                                 0);
                bridge_calls_complete(t, c, &ok, true);
        }
        assert_int_equal(bridge_calls_zombie_count(t), BRIDGE_CALLS_MAX_ZOMBIES);
        /* The oldest are forgotten first. */
        assert_false(bridge_calls_is_zombie(t, 0));
        assert_true(bridge_calls_is_zombie(t, BRIDGE_CALLS_MAX_ZOMBIES + 9));
}

static void test_list_and_cancel(void **state)
{
        _cleanup_(bridge_calls_freep) struct bridge_calls *t = NULL;
        _cleanup_free_ uint64_t *ids = NULL;
        struct bridge_call *c;
        struct done d = {};
        size_t n;

        assert_int_equal(bridge_calls_new(&t), 0);
        assert_int_equal(
                bridge_calls_add(t, BRIDGE_RPC_WAIT_FOR_PROCESS, 0, BRIDGE_DEADLINE_NONE, "a", 1, on_done, &d, &c), 0);
        assert_int_equal(bridge_calls_add(t, BRIDGE_RPC_SIGNAL_PROCESS, 0, 5, NULL, 0, on_done, &d, &c), 0);
        bridge_calls_cancel(t, c);
        assert_int_equal(
                bridge_calls_add(t, BRIDGE_RPC_WAIT_FOR_PROCESS, 0, BRIDGE_DEADLINE_NONE, "b", 2, on_done, &d, &c), 0);
        assert_int_equal(bridge_calls_list(t, BRIDGE_RPC_WAIT_FOR_PROCESS, &ids, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(ids[0], 0);
        assert_int_equal(ids[1], 2);
        assert_int_equal(bridge_calls_next_deadline(t), BRIDGE_DEADLINE_NONE);
        assert_int_equal(d.count, 0);
        bridge_calls_fail_all(t, BRIDGE_STATUS_CLOSED, -ENOTCONN, "bridge closed", false);
        assert_int_equal(d.count, 2);
}

static void test_held_store_is_fifo_and_bounded(void **state)
{
        struct bridge_held h;
        struct bridge_held_msg *m;

        bridge_held_init(&h);
        assert_int_equal(bridge_held_add(&h, BRIDGE_NOTIFY_CONTAINER, 0, "a", "first", 5), 0);
        assert_int_equal(bridge_held_add(&h, bridge_type_response_for(BRIDGE_RPC_WAIT_FOR_PROCESS), 7, NULL, "r7", 2),
                         0);
        assert_int_equal(bridge_held_add(&h, BRIDGE_NOTIFY_CONTAINER, 0, "a", "second", 6), 0);
        assert_int_equal(h.n, 3);
        assert_int_equal(h.bytes, 13);
        /* A response is found by id only, a notification by container only, oldest first. */
        assert_null(bridge_held_take_response(&h, 0));
        assert_null(bridge_held_take_notification(&h, "b"));
        m = bridge_held_take_notification(&h, "a");
        assert_non_null(m);
        assert_memory_equal(m->payload, "first", 5);
        bridge_held_msg_free(m);
        m = bridge_held_take_response(&h, 7);
        assert_non_null(m);
        assert_int_equal(m->len, 2);
        bridge_held_msg_free(m);
        assert_int_equal(h.n, 1);
        assert_int_equal(bridge_held_clear(&h), 1);
        assert_int_equal(h.bytes, 0);

        /* Caps: count and bytes. Refusals are counted, the store stays usable. */
        for (unsigned i = 0; i < BRIDGE_HELD_MAX; i++)
                assert_int_equal(bridge_held_add(&h, BRIDGE_NOTIFY_CONTAINER, 0, "c", "x", 1), 0);
        assert_int_equal(bridge_held_add(&h, BRIDGE_NOTIFY_CONTAINER, 0, "c", "x", 1), -ENOSPC);
        assert_int_equal(h.dropped, 1);
        assert_int_equal(bridge_held_clear(&h), BRIDGE_HELD_MAX);
        {
                char *big = calloc(1, BRIDGE_HELD_MAX_BYTES);

                assert_non_null(big);
                assert_int_equal(bridge_held_add(&h, 0x20100601, 1, NULL, big, BRIDGE_HELD_MAX_BYTES), 0);
                assert_int_equal(bridge_held_add(&h, 0x20100601, 2, NULL, big, 1), -ENOSPC);
                assert_int_equal(h.dropped, 2);
                free(big);
        }
        bridge_held_clear(&h);
        /* The tail survives taking the last element: appending still works. */
        assert_int_equal(bridge_held_add(&h, 0x20100601, 3, NULL, "y", 1), 0);
        m = bridge_held_take_response(&h, 3);
        bridge_held_msg_free(m);
        assert_int_equal(bridge_held_add(&h, 0x20100601, 4, NULL, "z", 1), 0);
        assert_int_equal(h.n, 1);
        m = bridge_held_take_response(&h, 4);
        assert_non_null(m);
        assert_int_equal(m->id, 4);
        bridge_held_msg_free(m);
        bridge_held_clear(&h);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_seed_next_id_only_raises),
                cmocka_unit_test(test_response_completes_exactly_once),
                cmocka_unit_test(test_loss_completes_every_call_once),
                cmocka_unit_test(test_fail_all_can_keep_zombies_for_late_answers),
                cmocka_unit_test(test_timeout_completes_once_and_late_reply_is_a_zombie),
                cmocka_unit_test(test_preregister_twice_returns_existing_call),
                cmocka_unit_test(test_fail_all_also_fails_calls_added_by_callbacks),
                cmocka_unit_test(test_thousands_of_waits_are_found_by_id),
                cmocka_unit_test(test_zombies_are_bounded),
                cmocka_unit_test(test_list_and_cancel),
                cmocka_unit_test(test_held_store_is_fifo_and_bounded),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
