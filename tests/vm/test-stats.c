/* tests/vm/test-stats.c: job statistics typed parameters -> struct vm_migration_stats. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "vm/stats.h"

static void test_stats_read_every_field_and_default_absent_ones_to_zero(void **state)
{
        virTypedParameterPtr params = NULL;
        int n = 0, max = 0;
        struct vm_migration_stats s;

        assert_int_equal(virInitialize(), 0);
        assert_int_equal(virTypedParamsAddULLong(&params, &n, &max, VIR_DOMAIN_JOB_TIME_ELAPSED, 1500), 0);
        assert_int_equal(virTypedParamsAddULLong(&params, &n, &max, VIR_DOMAIN_JOB_DATA_PROCESSED, 20u << 20), 0);
        assert_int_equal(virTypedParamsAddULLong(&params, &n, &max, VIR_DOMAIN_JOB_DATA_REMAINING, 1u << 20), 0);
        assert_int_equal(virTypedParamsAddULLong(&params, &n, &max, VIR_DOMAIN_JOB_DATA_TOTAL, 64u << 20), 0);
        assert_int_equal(virTypedParamsAddULLong(&params, &n, &max, VIR_DOMAIN_JOB_MEMORY_ITERATION, 6), 0);
        assert_int_equal(virTypedParamsAddULLong(&params, &n, &max, VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE, 2048), 0);
        assert_int_equal(virTypedParamsAddULLong(&params, &n, &max, VIR_DOMAIN_JOB_MEMORY_BPS, 70u << 20), 0);
        assert_int_equal(virTypedParamsAddInt(&params, &n, &max, VIR_DOMAIN_JOB_AUTO_CONVERGE_THROTTLE, 30), 0);

        vm_migration_stats_from_typed(params, n, &s);
        assert_int_equal(s.time_elapsed_ms, 1500);
        assert_int_equal(s.data_processed, 20u << 20);
        assert_int_equal(s.data_remaining, 1u << 20);
        assert_int_equal(s.data_total, 64u << 20);
        assert_int_equal(s.memory_iteration, 6);
        assert_int_equal(s.dirty_rate_pages, 2048);
        assert_int_equal(s.memory_bps, 70u << 20);
        assert_int_equal(s.auto_converge_throttle, 30);
        assert_int_equal(s.downtime_ms, 0);

        assert_int_equal(virTypedParamsAddULLong(&params, &n, &max, VIR_DOMAIN_JOB_DOWNTIME, 24), 0);
        vm_migration_stats_from_typed(params, n, &s);
        assert_int_equal(s.downtime_ms, 24);
        virTypedParamsFree(params, n);

        vm_migration_stats_from_typed(NULL, 0, &s);
        assert_int_equal(s.data_total, 0);
        assert_int_equal(s.auto_converge_throttle, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stats_read_every_field_and_default_absent_ones_to_zero),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
