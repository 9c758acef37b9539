/* tests/relay/test-vsock-route.c: the AF_VSOCK routing decision, without a kernel. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "relay/vsock-route.h"

static void test_route_connection_from_registered_cid_reaches_its_vm(void **state)
{
        struct relay_vsock_route rt = {};
        int vm_a, vm_b;
        void *reg = NULL;

        assert_int_equal(relay_vsock_route_add(&rt, 3, &vm_a), 0);
        assert_int_equal(relay_vsock_route_add(&rt, 7, &vm_b), 0);
        assert_int_equal(relay_vsock_route_decide(&rt, 7, &reg), 0);
        assert_ptr_equal(reg, &vm_b);
        assert_int_equal(relay_vsock_route_decide(&rt, 3, &reg), 0);
        assert_ptr_equal(reg, &vm_a);
        relay_vsock_route_done(&rt);
}

static void test_route_unexpected_cid_is_refused(void **state)
{
        struct relay_vsock_route rt = {};
        int vm;
        void *reg = NULL;

        assert_int_equal(relay_vsock_route_add(&rt, 3, &vm), 0);
        assert_int_equal(relay_vsock_route_decide(&rt, 4, &reg), -ECONNREFUSED);
        assert_null(reg);
        /* host, local and the wildcard are never a VM */
        assert_int_equal(relay_vsock_route_decide(&rt, 2, &reg), -ECONNREFUSED);
        assert_int_equal(relay_vsock_route_decide(&rt, 1, &reg), -ECONNREFUSED);
        assert_int_equal(relay_vsock_route_decide(&rt, UINT32_MAX, &reg), -ECONNREFUSED);
        relay_vsock_route_done(&rt);
}

static void test_route_empty_table_refuses_everyone(void **state)
{
        struct relay_vsock_route rt = {};
        void *reg = NULL;

        assert_int_equal(relay_vsock_route_decide(&rt, 3, &reg), -ECONNREFUSED);
}

static void test_route_duplicate_cid_on_one_port_is_in_use(void **state)
{
        struct relay_vsock_route rt = {};
        int a, b;

        assert_int_equal(relay_vsock_route_add(&rt, 9, &a), 0);
        assert_int_equal(relay_vsock_route_add(&rt, 9, &b), -EADDRINUSE);
        assert_int_equal(relay_vsock_route_add(&rt, 2, &b), -EINVAL);
        assert_int_equal(relay_vsock_route_add(&rt, UINT32_MAX, &b), -EINVAL);
        relay_vsock_route_done(&rt);
}

static void test_route_removed_vm_is_refused_and_others_stay(void **state)
{
        struct relay_vsock_route rt = {};
        int vm[40];
        void *reg = NULL;

        for (uint32_t i = 0; i < 40; i++)
                assert_int_equal(relay_vsock_route_add(&rt, 100 + i, &vm[i]), 0);
        assert_int_equal(relay_vsock_route_remove(&rt, 110), 0);
        assert_int_equal(relay_vsock_route_remove(&rt, 110), -ENOENT);
        assert_int_equal(relay_vsock_route_decide(&rt, 110, &reg), -ECONNREFUSED);
        for (uint32_t i = 0; i < 40; i++) {
                if (i == 10)
                        continue;
                assert_int_equal(relay_vsock_route_decide(&rt, 100 + i, &reg), 0);
                assert_ptr_equal(reg, &vm[i]);
        }
        relay_vsock_route_done(&rt);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_route_connection_from_registered_cid_reaches_its_vm),
                cmocka_unit_test(test_route_unexpected_cid_is_refused),
                cmocka_unit_test(test_route_empty_table_refuses_everyone),
                cmocka_unit_test(test_route_duplicate_cid_on_one_port_is_in_use),
                cmocka_unit_test(test_route_removed_vm_is_refused_and_others_stay),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
