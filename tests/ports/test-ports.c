/* tests/ports/test-ports.c: the port floor: never reused, only raised, exhaustion, restored reservations. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ports/ports.h"

static void test_first_port_skips_bridge_port(void **state)
{
        _cleanup_(ports_freep) struct ports *p = NULL;
        uint32_t port = 0;

        assert_int_equal(ports_new(&p), 0);
        assert_int_equal(ports_floor(p), PORTS_FIRST);
        assert_int_equal(ports_alloc(p, &port), 0);
        assert_int_equal(port, 0x40000001u);
        assert_int_not_equal(port, PORTS_BRIDGE);
}

static void test_ports_are_never_reused(void **state)
{
        _cleanup_(ports_freep) struct ports *p = NULL;
        uint32_t prev = 0, port;

        assert_int_equal(ports_new(&p), 0);
        for (int i = 0; i < 10000; i++) {
                assert_int_equal(ports_alloc(p, &port), 0);
                assert_true(port > prev);
                prev = port;
        }
        assert_int_equal(ports_floor(p), prev + 1);
}

static void test_raise_floor_only_raises(void **state)
{
        _cleanup_(ports_freep) struct ports *p = NULL;
        uint32_t port;

        assert_int_equal(ports_new(&p), 0);
        assert_int_equal(ports_raise_floor(p, 0x40000100u), 0);
        assert_int_equal(ports_floor(p), 0x40000100u);
        /* Equal is a no-op, lower is refused and leaves the floor alone. */
        assert_int_equal(ports_raise_floor(p, 0x40000100u), 0);
        assert_int_equal(ports_raise_floor(p, 0x400000ffu), -ERANGE);
        assert_int_equal(ports_raise_floor(p, PORTS_FIRST), -ERANGE);
        assert_int_equal(ports_floor(p), 0x40000100u);
        assert_int_equal(ports_alloc(p, &port), 0);
        assert_int_equal(port, 0x40000100u);
}

static void test_exhaustion_returns_enospc_and_never_wraps(void **state)
{
        _cleanup_(ports_freep) struct ports *p = NULL;
        uint32_t port = 0;

        assert_int_equal(ports_new(&p), 0);
        assert_int_equal(ports_raise_floor(p, PORTS_LAST - 1), 0);
        assert_int_equal(ports_alloc(p, &port), 0);
        assert_int_equal(port, 0xFFFFFFFDu);
        assert_int_equal(ports_alloc(p, &port), 0);
        assert_int_equal(port, 0xFFFFFFFEu);
        port = 7;
        assert_int_equal(ports_alloc(p, &port), -ENOSPC);
        assert_int_equal(port, 7); /* untouched on failure */
        assert_int_equal(ports_alloc(p, &port), -ENOSPC);
        assert_int_equal(ports_floor(p), PORTS_EXHAUSTED);
}

static void test_reserve_restored_port_exactly_once(void **state)
{
        _cleanup_(ports_freep) struct ports *p = NULL;
        uint32_t port;

        assert_int_equal(ports_new(&p), 0);
        assert_int_equal(ports_raise_floor(p, 0x40000010u), 0);
        assert_int_equal(ports_reserve(p, 0x40000005u), 0);
        assert_int_equal(ports_reserve(p, 0x40000002u), 0);
        assert_int_equal(ports_reserve(p, 0x40000005u), -EEXIST);
        assert_true(ports_is_reserved(p, 0x40000002u));
        assert_true(ports_is_reserved(p, 0x40000005u));
        assert_false(ports_is_reserved(p, 0x40000003u));
        assert_int_equal(ports_reserved_count(p), 2);
        /* A new allocation never lands on a reserved port. */
        assert_int_equal(ports_alloc(p, &port), 0);
        assert_int_equal(port, 0x40000010u);
}

static void test_reserve_outside_handed_out_range_is_refused(void **state)
{
        _cleanup_(ports_freep) struct ports *p = NULL;

        assert_int_equal(ports_new(&p), 0);
        assert_int_equal(ports_raise_floor(p, 0x40000010u), 0);
        assert_int_equal(ports_reserve(p, PORTS_BRIDGE), -ERANGE);
        assert_int_equal(ports_reserve(p, 0x40000010u), -ERANGE);
        assert_int_equal(ports_reserve(p, 0xFFFFFFFFu), -ERANGE);
        assert_int_equal(ports_reserved_count(p), 0);
}

static void test_reserve_many_keeps_order(void **state)
{
        _cleanup_(ports_freep) struct ports *p = NULL;

        assert_int_equal(ports_new(&p), 0);
        assert_int_equal(ports_raise_floor(p, PORTS_FIRST + 3000), 0);
        for (uint32_t i = 0; i < 3000; i += 2)
                assert_int_equal(ports_reserve(p, PORTS_FIRST + 2999 - i), 0);
        for (uint32_t i = 0; i < 3000; i++)
                assert_int_equal(ports_is_reserved(p, PORTS_FIRST + i), (i % 2) == 1);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_first_port_skips_bridge_port),
                cmocka_unit_test(test_ports_are_never_reused),
                cmocka_unit_test(test_raise_floor_only_raises),
                cmocka_unit_test(test_exhaustion_returns_enospc_and_never_wraps),
                cmocka_unit_test(test_reserve_restored_port_exactly_once),
                cmocka_unit_test(test_reserve_outside_handed_out_range_is_refused),
                cmocka_unit_test(test_reserve_many_keeps_order),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
