/* daemon/metrics.c: the Prometheus text for `vsockmux stats --prometheus` and --metrics-listen; one family at a time, each with HELP and TYPE. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/metrics.h"
#include "util/macro.h"

static const char *const stream_names[_VMM_STREAM_KIND_MAX] = { "stdin", "stdout", "stderr" };

static void family(FILE *f, const char *name, const char *type, const char *help)
{
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* VM names are [A-Za-z0-9._-] (vmm_vm_add checks), so they need no escaping inside a label. */
typedef uint64_t (*vm_value_fn)(const struct vmm_vm_counters *c);

static void per_vm(FILE *f, struct vmm *m, const char *name, const char *type, const char *help, vm_value_fn fn)
{
        family(f, name, type, help);
        for (struct vmm_vm *vm = vmm_vm_next(m, NULL); vm; vm = vmm_vm_next(m, vm)) {
                struct vmm_vm_counters c;

                vmm_vm_get_counters(vm, &c);
                fprintf(f, "%s{vm=\"%s\"} %" PRIu64 "\n", name, vmm_vm_name(vm), fn(&c));
        }
}

static uint64_t v_processes(const struct vmm_vm_counters *c)
{
        return c->processes;
}
static uint64_t v_streams(const struct vmm_vm_counters *c)
{
        return c->streams;
}
static uint64_t v_errors(const struct vmm_vm_counters *c)
{
        return c->stream_errors;
}
static uint64_t v_dropped(const struct vmm_vm_counters *c)
{
        return c->dropped_bytes;
}
static uint64_t v_reconnects(const struct vmm_vm_counters *c)
{
        return c->bridge_connects ? c->bridge_connects - 1 : 0;
}
static uint64_t v_connects(const struct vmm_vm_counters *c)
{
        return c->bridge_connects;
}
static uint64_t v_held(const struct vmm_vm_counters *c)
{
        return c->held_replies;
}
static uint64_t v_held_dropped(const struct vmm_vm_counters *c)
{
        return c->held_dropped;
}

static void histogram(FILE *f, const char *name, const char *vm, const struct vmm_duration_hist *h)
{
        uint64_t cum = 0;

        for (size_t i = 0; i < VMM_DURATION_N_BUCKETS; i++) {
                cum += h->bucket[i];
                fprintf(f, "%s_bucket{vm=\"%s\",le=\"%g\"} %" PRIu64 "\n", name, vm,
                        (double)vmm_duration_bucket_ms[i] / 1000.0, cum);
        }
        fprintf(f, "%s_bucket{vm=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", name, vm, h->count);
        fprintf(f, "%s_sum{vm=\"%s\"} %.9f\n", name, vm, (double)h->sum_ns / 1e9);
        fprintf(f, "%s_count{vm=\"%s\"} %" PRIu64 "\n", name, vm, h->count);
}

static void per_vm_metrics(FILE *f, struct vmm *m)
{
        per_vm(f, m, "vsockmux_vm_processes", "gauge", "Processes the VM has, running and remembered.", v_processes);
        per_vm(f, m, "vsockmux_vm_streams", "gauge", "Stdio streams of the VM relaying now.", v_streams);
        family(f, "vsockmux_vm_stream_bytes_total", "counter",
               "Bytes delivered per stdio stream kind: stdin to the guest, stdout and stderr from it.");
        for (struct vmm_vm *vm = vmm_vm_next(m, NULL); vm; vm = vmm_vm_next(m, vm)) {
                struct vmm_vm_counters c;

                vmm_vm_get_counters(vm, &c);
                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                        fprintf(f,
                                "vsockmux_vm_stream_bytes_total{vm=\"%s\",stream=\"%s\",direction=\"%s\"} %" PRIu64
                                "\n",
                                vmm_vm_name(vm), stream_names[k], k == VMM_STDIN ? "to_guest" : "from_guest",
                                c.bytes[k]);
        }
        per_vm(f, m, "vsockmux_vm_stream_errors_total", "counter",
               "Stdio streams that ended with an error (a failed endpoint or a dropped guest connection).", v_errors);
        per_vm(f, m, "vsockmux_vm_dropped_bytes_total", "counter",
               "Bytes read by a stdio stream that then failed, never delivered.", v_dropped);
        per_vm(f, m, "vsockmux_vm_bridge_connects_total", "counter",
               "Times the guest's bridge connected and negotiated.", v_connects);
        per_vm(f, m, "vsockmux_vm_bridge_reconnects_total", "counter",
               "Times the guest's bridge connected again after its first connection.", v_reconnects);
        per_vm(f, m, "vsockmux_vm_held_replies", "gauge",
               "Guest replies held for calls not registered yet (after a restore).", v_held);
        per_vm(f, m, "vsockmux_vm_held_replies_dropped_total", "counter",
               "Guest replies refused because the held-reply cap was reached.", v_held_dropped);
        family(f, "vsockmux_vm_save_duration_seconds", "histogram",
               "From a save's start until its state was handed out.");
        for (struct vmm_vm *vm = vmm_vm_next(m, NULL); vm; vm = vmm_vm_next(m, vm)) {
                struct vmm_vm_counters c;

                vmm_vm_get_counters(vm, &c);
                histogram(f, "vsockmux_vm_save_duration_seconds", vmm_vm_name(vm), &c.save);
        }
        family(f, "vsockmux_vm_restore_duration_seconds", "histogram",
               "From a restore's start until the guest was back on its bridge.");
        for (struct vmm_vm *vm = vmm_vm_next(m, NULL); vm; vm = vmm_vm_next(m, vm)) {
                struct vmm_vm_counters c;

                vmm_vm_get_counters(vm, &c);
                histogram(f, "vsockmux_vm_restore_duration_seconds", vmm_vm_name(vm), &c.restore);
        }
}

/* The control server's caps share the cap family with the vmm's; eviction and refusal, the two
 * outcomes at max_connections, also have their own counters. */
static void control_metrics(FILE *f, const struct control_server *server)
{
        struct control_server_stats cs = { 0 };

        if (server)
                control_server_get_stats(server, &cs);
        fprintf(f, "vsockmux_cap_hits_total{cap=\"max_connections\"} %" PRIu64 "\n",
                cs.connections_evicted + cs.connections_refused);
        fprintf(f, "vsockmux_cap_hits_total{cap=\"max_calls_per_connection\"} %" PRIu64 "\n", cs.calls_refused);
        fprintf(f, "vsockmux_cap_hits_total{cap=\"max_control_frame\"} %" PRIu64 "\n", cs.frames_refused);
        fprintf(f, "vsockmux_cap_hits_total{cap=\"control_unfinished_bytes\"} %" PRIu64 "\n", cs.partial_shed);
        family(f, "vsockmux_control_connections_evicted_total", "counter",
               "Idle control connections closed at --max-connections to make way for a new one.");
        fprintf(f, "vsockmux_control_connections_evicted_total %" PRIu64 "\n", cs.connections_evicted);
        family(f, "vsockmux_control_connections_refused_total", "counter",
               "Control connections refused at --max-connections because every open one had a call in flight.");
        fprintf(f, "vsockmux_control_connections_refused_total %" PRIu64 "\n", cs.connections_refused);
}

static void daemon_metrics(FILE *f, struct vmm *m, struct relay *r, const struct control_server *server)
{
        struct relay_stats rs;
        struct vmm_stats vs;

        relay_get_stats(r, &rs);
        vmm_get_stats(m, &vs);
        family(f, "vsockmux_vms", "gauge", "VMs known to the daemon.");
        fprintf(f, "vsockmux_vms %u\n", vs.vms);
        family(f, "vsockmux_bytes_relayed_total", "counter", "Bytes relayed by every stream, both ways.");
        fprintf(f, "vsockmux_bytes_relayed_total %" PRIu64 "\n", rs.bytes_relayed);
        family(f, "vsockmux_bytes_spliced_total", "counter",
               "Of the bytes relayed, those splice(2) moved without a copy through the buffer pool.");
        fprintf(f, "vsockmux_bytes_spliced_total %" PRIu64 "\n", rs.bytes_spliced);
        family(f, "vsockmux_buffer_pool_buffers_in_use", "gauge",
               "Pool buffers holding data read and not yet delivered.");
        fprintf(f, "vsockmux_buffer_pool_buffers_in_use %u\n", rs.pool_bufs_in_use);
        family(f, "vsockmux_buffer_pool_buffers_touched", "gauge", "Pool buffers used so far (touched memory).");
        fprintf(f, "vsockmux_buffer_pool_buffers_touched %u\n", rs.pool_bufs_total);
        family(f, "vsockmux_buffer_pool_buffers_max", "gauge", "Pool buffers the reserved address space holds.");
        fprintf(f, "vsockmux_buffer_pool_buffers_max %zu\n", rs.pool_buf_size ? rs.pool_bytes / rs.pool_buf_size : 0);
        family(f, "vsockmux_buffer_pool_buffer_bytes", "gauge", "The size of one pool buffer.");
        fprintf(f, "vsockmux_buffer_pool_buffer_bytes %zu\n", rs.pool_buf_size);
        family(f, "vsockmux_control_connections", "gauge", "Open control-socket connections.");
        fprintf(f, "vsockmux_control_connections %u\n", server ? control_server_connections(server) : 0);
        family(f, "vsockmux_cap_hits_total", "counter", "Requests a configured cap refused, per cap.");
        for (int c = 0; c < _VMM_CAP_MAX; c++)
                fprintf(f, "vsockmux_cap_hits_total{cap=\"%s\"} %" PRIu64 "\n", vmm_cap_to_string(c), vs.cap_hits[c]);
        control_metrics(f, server);
}

int metrics_render(struct vmm *m, struct relay *r, const struct control_server *server, char **ret, size_t *ret_len)
{
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        if (!f)
                return -errno;
        daemon_metrics(f, m, r, server);
        per_vm_metrics(f, m);
        if (ferror(f) | fclose(f)) {
                free(text);
                return -ENOMEM;
        }
        *ret = text;
        *ret_len = len;
        return 0;
}
