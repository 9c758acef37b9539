/* daemon/vmm-counters.c: the duration histograms and cap names behind the metrics (each room keeps its own counters; vmm_vm_get_counters() sums them). */
#include "daemon/vmm-types.h"

const uint64_t vmm_duration_bucket_ms[VMM_DURATION_N_BUCKETS] = { VMM_DURATION_BUCKETS_MS };

void vmm_duration_observe(struct vmm_duration_hist *h, uint64_t ns)
{
        size_t i = 0;

        while (i < VMM_DURATION_N_BUCKETS && ns > vmm_duration_bucket_ms[i] * 1000000ull)
                i++;
        h->bucket[i]++;
        h->count++;
        h->sum_ns += ns;
}

const char *vmm_cap_to_string(enum vmm_cap c)
{
        static const char *const names[_VMM_CAP_MAX] = {
                [VMM_CAP_VMS] = "max_vms",
                [VMM_CAP_PROCESSES] = "max_processes",
                [VMM_CAP_STREAMS] = "max_streams",
        };

        return c >= 0 && c < _VMM_CAP_MAX ? names[c] : "unknown";
}
