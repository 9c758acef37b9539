/* daemon/vmm-counters.c: the per-VM numbers the metrics show: cumulative counters kept as things happen, gauges computed when asked. */
#include <string.h>

#include "bridge/conn.h"
#include "daemon/vmm-internal.h"

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

void vmm_vm_get_counters(struct vmm_vm *vm, struct vmm_vm_counters *ret)
{
        struct vmm_vm_counters c = vm->counters;
        struct bridge_conn *conn = vm->bridge ? bridge_host_conn(vm->bridge) : NULL;
        struct list_head *pos;

        c.processes = vm->n_processes;
        c.streams = 0;
        list_for_each(pos, &vm->processes) {
                const struct vmm_process *p = list_entry(pos, struct vmm_process, link);
                struct vmm_process_info info;

                vmm_process_get_info(p, &info);
                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                        c.bytes[k] += info.bytes[k];
                        if (p->streams[k].stream && !p->streams[k].done)
                                c.streams++;
                }
        }
        c.held_replies = conn ? bridge_conn_held_count(conn) : 0;
        c.held_dropped = conn ? bridge_conn_held_dropped(conn) : 0;
        *ret = c;
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
