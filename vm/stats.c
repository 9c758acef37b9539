/* vm/stats.c: job statistics from typed parameters. */
#include <string.h>

#include "vm/stats.h"

static uint64_t get_ull(virTypedParameterPtr params, int n, const char *name)
{
        unsigned long long v = 0;

        return virTypedParamsGetULLong(params, n, name, &v) == 1 ? v : 0;
}

void vm_migration_stats_from_typed(virTypedParameterPtr params, int nparams, struct vm_migration_stats *ret)
{
        struct vm_migration_stats s = {};
        int throttle = 0;

        s.time_elapsed_ms = get_ull(params, nparams, VIR_DOMAIN_JOB_TIME_ELAPSED);
        s.data_processed = get_ull(params, nparams, VIR_DOMAIN_JOB_DATA_PROCESSED);
        s.data_remaining = get_ull(params, nparams, VIR_DOMAIN_JOB_DATA_REMAINING);
        s.data_total = get_ull(params, nparams, VIR_DOMAIN_JOB_DATA_TOTAL);
        s.memory_iteration = get_ull(params, nparams, VIR_DOMAIN_JOB_MEMORY_ITERATION);
        s.dirty_rate_pages = get_ull(params, nparams, VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE);
        s.memory_bps = get_ull(params, nparams, VIR_DOMAIN_JOB_MEMORY_BPS);
        s.downtime_ms = get_ull(params, nparams, VIR_DOMAIN_JOB_DOWNTIME);
        if (virTypedParamsGetInt(params, nparams, VIR_DOMAIN_JOB_AUTO_CONVERGE_THROTTLE, &throttle) == 1)
                s.auto_converge_throttle = throttle;
        *ret = s;
}
