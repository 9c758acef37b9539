/* daemon/save.c: save on the source (freeze, record, release) and resume (roll back a save). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/savestate.h"
#include "daemon/vmm-internal.h"
#include "util/log.h"

/* A stalled endpoint could hold a freeze for ever; past this the save fails and nothing changes. */
#define VMM_SAVE_FREEZE_TIMEOUT_NS (10ull * 1000000000ull)
/* After the guest is back, late replies for calls we never had are held this long, then dropped. */
#define VMM_RESUME_WINDOW_NS (30ull * 1000000000ull)

struct vmm_save_op {
        struct vmm_vm *vm;
        vmm_save_fn fn;
        void *userdata;
        uint64_t start_ns;
        unsigned pending;
        struct relay_timer *timer;
        bool finishing;
};

static struct vmm_save_op *save_op_free(struct vmm_save_op *op)
{
        if (op) {
                relay_timer_free(op->timer);
                free(op);
        }
        return NULL;
}

bool vmm_vm_is_saved(const struct vmm_vm *vm)
{
        return vm->saved;
}

/* ---- building the message ---- */

struct save_buf {
        Vsockmux__State__SavedState s;
        Vsockmux__State__Vm vm;
        Vsockmux__State__Transport t;
        Vsockmux__State__Process *procs;
        Vsockmux__State__Process **proc_ptrs;
        Vsockmux__State__Stream *streams;
        Vsockmux__State__Stream **stream_ptrs;
        char **containers;
        char **argv_store;
};

static void save_buf_done(struct save_buf *b)
{
        free(b->procs);
        free(b->proc_ptrs);
        free(b->streams);
        free(b->stream_ptrs);
        free(b->containers);
        free(b->argv_store);
}

static Vsockmux__State__ProcessState save_process_state(const struct vmm_process *p)
{
        if (!p->exit_known)
                return VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_RUNNING;
        switch (p->exit.kind) {
        case VMM_EXIT_EXITED:
                return VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_EXITED;
        case VMM_EXIT_SIGNALED:
                return VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_SIGNALED;
        default:
                return VSOCKMUX__STATE__PROCESS_STATE__PROCESS_STATE_LOST;
        }
}

static int save_build(struct vmm_vm *vm, struct save_buf *b)
{
        size_t np = vm->n_processes, i = 0, si = 0, ai = 0, ci = 0, argv_total = 0;
        struct list_head *pos;
        struct timespec ts;

        memset(b, 0, sizeof(*b));
        list_for_each(pos, &vm->processes)
                argv_total += list_entry(pos, struct vmm_process, link)->n_argv;
        b->procs = calloc(np + 1, sizeof(*b->procs));
        b->proc_ptrs = calloc(np + 1, sizeof(*b->proc_ptrs));
        b->streams = calloc(3 * np + 1, sizeof(*b->streams));
        b->stream_ptrs = calloc(3 * np + 1, sizeof(*b->stream_ptrs));
        b->containers = calloc(vm->n_containers + 1, sizeof(*b->containers));
        b->argv_store = calloc(argv_total + 1, sizeof(*b->argv_store));
        if (!b->procs || !b->proc_ptrs || !b->streams || !b->stream_ptrs || !b->containers || !b->argv_store)
                return -ENOMEM;

        vsockmux__state__saved_state__init(&b->s);
        vsockmux__state__vm__init(&b->vm);
        vsockmux__state__transport__init(&b->t);
        clock_gettime(CLOCK_REALTIME, &ts);
        b->s.schema_version = SAVESTATE_SCHEMA_VERSION;
        b->s.saved_at_unix_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        b->s.vm = &b->vm;
        b->vm.name = vm->name;
        b->vm.transport = &b->t;
        if (vm->transport.kind == RELAY_TRANSPORT_HVSOCK) {
                b->t.kind = VSOCKMUX__STATE__TRANSPORT_KIND__TRANSPORT_KIND_HVSOCK;
                b->t.uds_path = vm->transport.uds_path;
        } else {
                b->t.kind = VSOCKMUX__STATE__TRANSPORT_KIND__TRANSPORT_KIND_VSOCK;
                b->t.cid = vm->transport.cid;
        }
        b->vm.port_floor = ports_floor(vm->ports);
        b->vm.bridge_next_id = bridge_host_next_id(vm->bridge);
        b->vm.protocol_version = 4;
        b->vm.runtime_os_type = (char *)(bridge_host_runtime_os(vm->bridge) ?: "linux");
        b->vm.stdio_resume = vm->stdio_resume;
        b->vm.generation = vm->generation;

        list_for_each(pos, &vm->containers)
                b->containers[ci++] = list_entry(pos, struct vmm_container, link)->id;
        b->vm.containers = b->containers;
        b->vm.n_containers = ci;

        list_for_each(pos, &vm->processes) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);
                Vsockmux__State__Process *o = &b->procs[i];
                size_t bytes = 0;

                vsockmux__state__process__init(o);
                o->pid = p->pid;
                o->exec_id = p->exec_id;
                o->container_id = p->container_id;
                o->argv = &b->argv_store[ai];
                /* argv is for `ps` only: keep the leading words that fit the bound. */
                for (size_t k = 0; k < p->n_argv; k++) {
                        bytes += strlen(p->argv[k]) + 1;
                        if (bytes > SAVESTATE_MAX_ARGV_BYTES)
                                break;
                        b->argv_store[ai++] = p->argv[k];
                        o->n_argv++;
                }
                o->state = save_process_state(p);
                o->exit_code = p->exit_known && p->exit.kind == VMM_EXIT_EXITED ? p->exit.code : 0;
                if (p->exit_known && p->exit.kind == VMM_EXIT_SIGNALED) {
                        o->exit_signal = p->exit.code;
                        o->exit_message = (char *)p->exit.message;
                }
                o->wait_call_id = p->wait_outstanding ? p->wait_call_id : 0;
                o->container_init = p->container_init;
                o->terminal = p->terminal;
                o->console_height = p->console_height;
                o->console_width = p->console_width;
                o->log_path = p->log_path ? p->log_path : (char *)"";
                o->streams = &b->stream_ptrs[si];
                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                        struct vmm_stream *s = &p->streams[k];
                        Vsockmux__State__Stream *st = &b->streams[si];

                        if (s->port == 0)
                                continue;
                        vsockmux__state__stream__init(st);
                        if (s->stream)
                                relay_stream_get_counters(s->stream, &s->counters);
                        st->kind = (Vsockmux__State__StreamKind)(k + 1);
                        st->port = s->port;
                        st->rx_guest = s->counters.rx_guest;
                        st->tx_guest = s->counters.tx_guest;
                        st->rx_endpoint = s->counters.rx_endpoint;
                        st->tx_endpoint = s->counters.tx_endpoint;
                        st->eof = s->done;
                        st->endpoint = s->endpoint ? s->endpoint : (char *)"";
                        b->stream_ptrs[si++] = st;
                        o->n_streams++;
                }
                b->proc_ptrs[i++] = o;
        }
        b->vm.processes = b->proc_ptrs;
        b->vm.n_processes = i;
        return 0;
}

/* ---- the save ---- */

void vmm_save_abandon(struct vmm_vm *vm)
{
        struct vmm_save_op *op = TAKE_PTR(vm->save);

        if (!op)
                return;
        op->fn(-ESHUTDOWN, "the VM was removed during the save", NULL, 0, 0, op->userdata);
        if (op->finishing) {
                /* save_finish() is queued with op: it frees it. */
                op->vm = NULL;
                return;
        }
        save_op_free(op);
}

static void save_unfreeze(struct vmm_vm *vm)
{
        struct list_head *pos;

        list_for_each(pos, &vm->processes) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                        if (p->streams[k].stream)
                                (void)relay_stream_resume(p->streams[k].stream);
                vmm_process_maybe_report(p);
        }
}

static void save_fail(struct vmm_vm *vm, int error, const char *message)
{
        struct vmm_save_op *op = TAKE_PTR(vm->save);

        log_warn("vm %s: save failed: %s", vm->name, message);
        save_unfreeze(vm);
        bridge_host_set_migrating(vm->bridge, false);
        vmm_emit(vm->vmm, VMM_EVENT_MIGRATION_FAILED, vm->name, NULL, 0, NULL, message);
        op->fn(error, message, NULL, 0, 0, op->userdata);
        save_op_free(op);
}

/* Lets go of everything another daemon needs: the bridge port and every stdio port. The frozen
 * streams keep their endpoints and counters for a resume. */
static void save_release(struct vmm_vm *vm)
{
        struct list_head *pos;

        list_for_each(pos, &vm->processes) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                relay_timer_disarm(p->timer);
                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                        struct vmm_stream *s = &p->streams[k];

                        s->listener = relay_listener_free(s->listener);
                        if (s->stream)
                                (void)relay_stream_detach_guest(s->stream);
                }
        }
        bridge_host_release(vm->bridge);
        vm->saved = true;
        /* The sockets are gone: the daemon that restores the state may take the transport. */
        vmm_vm_fence_drop(vm);
}

static void save_finish(void *userdata)
{
        struct vmm_save_op *op = userdata;
        struct vmm_vm *vm = op->vm;
        _cleanup_free_ uint8_t *blob = NULL;
        struct save_buf b;
        size_t len = 0;
        char msg[128];
        int r;

        if (!vm) {
                save_op_free(op);
                return;
        }
        r = save_build(vm, &b);
        if (r >= 0)
                r = savestate_encode(&b.s, &blob, &len);
        save_buf_done(&b);
        if (r < 0) {
                snprintf(msg, sizeof(msg), "cannot encode the saved state: %s", strerror(-r));
                save_fail(vm, r, msg);
                return;
        }
        save_release(vm);
        vm->save = NULL;
        vmm_duration_observe(&vm->counters.save, relay_now_ns(vm->vmm->relay) - op->start_ns);
        log_info("vm %s: saved: %u processes, %zu bytes; listeners and guest connections released", vm->name,
                 vm->n_processes, len);
        op->fn(0, "", blob, len, vm->n_processes, op->userdata);
        save_op_free(op);
}

void vmm_save_stream_frozen(struct vmm_vm *vm)
{
        struct vmm_save_op *op = vm->save;

        if (!op || op->pending == 0)
                return;
        if (--op->pending == 0 && !op->finishing) {
                op->finishing = true;
                relay_timer_disarm(op->timer);
                if (relay_defer(vm->vmm->relay, save_finish, op) < 0)
                        save_fail(vm, -ENOMEM, "cannot schedule the save");
        }
}

static void save_on_timeout(struct relay_timer *t, void *userdata)
{
        struct vmm_vm *vm = userdata;

        save_fail(vm, -ETIMEDOUT, "a stream could not flush to its endpoint in time (stalled endpoint?)");
}

int vmm_save(struct vmm_vm *vm, vmm_save_fn fn, void *userdata, char *err, size_t errlen)
{
        struct vmm_save_op *op;
        struct list_head *pos;
        int r;

        if (vm->saved) {
                snprintf(err, errlen, "VM %s is saved already", vm->name);
                return -EALREADY;
        }
        if (vm->save) {
                snprintf(err, errlen, "VM %s is being saved", vm->name);
                return -EBUSY;
        }
        if (vm->reattaching) {
                /* Its waits are only pre-registered until the guest is back: nothing to hand on yet. */
                snprintf(err, errlen, "VM %s was restored and its guest has not reconnected yet; retry when "
                         "`vsockmux vm ls` shows its bridge connected", vm->name);
                return -EBUSY;
        }
        list_for_each(pos, &vm->processes) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                /* Without a pid the destination could never find the process again. */
                if (p->state == VMM_PROCESS_PENDING || p->state == VMM_PROCESS_STARTING) {
                        snprintf(err, errlen, "an exec is starting in VM %s; retry when it has a pid", vm->name);
                        return -EBUSY;
                }
        }
        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        r = relay_timer_new(vm->vmm->relay, save_on_timeout, vm, &op->timer);
        if (r < 0) {
                free(op);
                return r;
        }
        op->vm = vm;
        op->fn = fn;
        op->start_ns = relay_now_ns(vm->vmm->relay);
        op->userdata = userdata;
        vm->save = op;
        bridge_host_set_migrating(vm->bridge, true);
        vmm_emit(vm->vmm, VMM_EVENT_MIGRATION_STARTED, vm->name, NULL, 0, NULL, "save");
        list_for_each(pos, &vm->processes) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++)
                        if (p->streams[k].stream && relay_stream_freeze(p->streams[k].stream) == 0)
                                op->pending++;
        }
        if (op->pending == 0) {
                op->finishing = true;
                r = relay_defer(vm->vmm->relay, save_finish, op);
        } else
                r = relay_timer_arm(op->timer, VMM_SAVE_FREEZE_TIMEOUT_NS);
        if (r < 0) {
                vm->save = NULL;
                save_unfreeze(vm);
                bridge_host_set_migrating(vm->bridge, false);
                save_op_free(op);
                snprintf(err, errlen, "cannot schedule the save: %s", strerror(-r));
                return r;
        }
        return 0;
}

/* ---- coming back: shared by resume (here) and restore (restore.c) ---- */

static void window_on_timer(struct relay_timer *t, void *userdata)
{
        struct vmm_vm *vm = userdata;

        bridge_host_end_resume_window(vm->bridge);
}

void vmm_reattach_bridge_connected(struct vmm_vm *vm)
{
        if (!vm->reattaching)
                return;
        vm->reattaching = false;
        if (vm->restore_start_ns) {
                vmm_duration_observe(&vm->counters.restore, relay_now_ns(vm->vmm->relay) - vm->restore_start_ns);
                vm->restore_start_ns = 0;
        }
        /* The new connection is in place: from now on a loss is a loss again (F3). */
        bridge_host_set_migrating(vm->bridge, false);
        if (!vm->window_timer && relay_timer_new(vm->vmm->relay, window_on_timer, vm, &vm->window_timer) < 0)
                bridge_host_end_resume_window(vm->bridge);
        else if (relay_timer_arm(vm->window_timer, VMM_RESUME_WINDOW_NS) < 0)
                bridge_host_end_resume_window(vm->bridge);
        log_info("vm %s: the guest is back; migration complete", vm->name);
        vmm_emit(vm->vmm, VMM_EVENT_MIGRATION_COMPLETED, vm->name, NULL, 0, NULL, NULL);
}

int vmm_resume(struct vmm_vm *vm, char *err, size_t errlen)
{
        struct list_head *pos;
        int r;

        if (!vm->saved) {
                snprintf(err, errlen, "VM %s is not saved", vm->name);
                return -EINVAL;
        }
        /* Fencing, before any socket is touched: a daemon that restored the state serves the VM
         * now (it holds the lock), or did since (the lock is at a newer generation). */
        r = vmm_vm_fence_take(vm, err, errlen);
        if (r >= 0)
                r = vmm_vm_fence_check(vm, vm->generation, err, errlen);
        if (r < 0) {
                vmm_vm_fence_drop(vm);
                return r;
        }
        bridge_host_begin_resume_window(vm->bridge);
        r = bridge_host_relisten(vm->bridge);
        if (r < 0) {
                vmm_vm_fence_drop(vm);
                snprintf(err, errlen, "cannot listen for the guest's bridge again: %s", strerror(-r));
                return r;
        }
        vm->saved = false;
        vm->reattaching = true;
        list_for_each(pos, &vm->processes) {
                struct vmm_process *p = list_entry(pos, struct vmm_process, link);

                for (int k = 0; k < _VMM_STREAM_KIND_MAX; k++) {
                        struct vmm_stream *s = &p->streams[k];

                        if (s->port == 0 || s->done)
                                continue;
                        r = vmm_stream_listen(s);
                        if (r < 0)
                                log_warn("vm %s: process %u: cannot listen on port 0x%08x again: %s", vm->name,
                                         p->pid, s->port, strerror(-r));
                }
                vmm_process_maybe_report(p);
        }
        log_info("vm %s: resumed on this daemon; waiting for the guest to return", vm->name);
        return 0;
}
