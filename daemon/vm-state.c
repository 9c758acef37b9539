/* daemon/vm-state.c: what a VM does for a handover: freeze and release (save), listen again (resume), its part of the saved state out and in (restore), and the guest's return. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/vm-private.h"
#include "util/log.h"

/* After the guest is back, late replies for calls we never had are held this long, then dropped. */
#define VMM_RESUME_WINDOW_NS (30ull * 1000000000ull)

struct relay *vmm_vm_relay(struct vmm_vm *vm)
{
        return vm->ctx->relay;
}

void vmm_vm_emit(struct vmm_vm *vm, enum vmm_event_kind kind, const char *message)
{
        vmm_context_emit(vm->ctx, kind, vm->name, NULL, 0, NULL, message);
}

void vmm_vm_set_migrating(struct vmm_vm *vm, bool migrating)
{
        bridge_host_set_migrating(vm->guest.bridge, migrating);
}

static const char *vm_state_to_string(enum vm_state s)
{
        static const char *const names[_VM_STATE_MAX] = {
                [VM_ACTIVE] = "active",           [VM_FROZEN] = "frozen",     [VM_SAVED] = "saved",
                [VM_REATTACHING] = "reattaching", [VM_REMOVING] = "removing", [VM_HANDED_OVER] = "handed over",
        };

        return s >= 0 && s < _VM_STATE_MAX ? names[s] : "invalid";
}

/* The transitions: active -> frozen (a save, or a live upgrade's hold) -> active (it failed), saved
 * (handed out) or handed over (a live upgrade: the new daemon serves it; nothing comes back) ->
 * reattaching (resumed; a restored VM starts there) -> active (the guest is back); any -> removing. */
static bool vm_state_allowed(enum vm_state from, enum vm_state to)
{
        switch (to) {
        case VM_FROZEN: return from == VM_ACTIVE;
        case VM_SAVED: return from == VM_FROZEN;
        case VM_HANDED_OVER: return from == VM_FROZEN;
        case VM_REATTACHING: return from == VM_SAVED || from == VM_ACTIVE;
        case VM_ACTIVE: return from == VM_FROZEN || from == VM_REATTACHING;
        case VM_REMOVING: return true;
        default: return false;
        }
}

void vm_set_state(struct vmm_vm *vm, enum vm_state state)
{
        if (!vm_state_allowed(vm->state, state))
                log_error("vm %s: state %s -> %s is not a transition (a bug)", vm->name, vm_state_to_string(vm->state),
                          vm_state_to_string(state));
        vm->state = state;
        /* What the containers and processes read of it. */
        vm->guest.saved = state == VM_SAVED;
        vm->guest.removing = state == VM_REMOVING;
}

bool vmm_vm_is_reattaching(const struct vmm_vm *vm)
{
        return vm->state == VM_REATTACHING;
}

bool vmm_vm_exec_starting(const struct vmm_vm *vm)
{
        return vmm_processes_starting(vm->processes);
}

/* ---- freeze and release ---- */

int vmm_vm_freeze(struct vmm_vm *vm, const struct vmm_vm_freeze_ops *ops, void *userdata, unsigned *ret_pending)
{
        if (vm->state != VM_ACTIVE)
                return -EBUSY;
        vm_set_state(vm, VM_FROZEN);
        vm->freeze.ops = ops;
        vm->freeze.userdata = userdata;
        vm->freeze.pending = vmm_processes_freeze(vm->processes);
        *ret_pending = vm->freeze.pending;
        return 0;
}

bool vmm_vm_probes_wait(const struct vmm_vm *vm, uint64_t since_ns, struct relay_timer *poll)
{
        /* An answer comes only over a connection that is up. */
        if (vm->guest.stdio_resume || !vm->guest.bridge || bridge_host_unanswered_probes(vm->guest.bridge) == 0 ||
            bridge_host_state(vm->guest.bridge) != BRIDGE_CONN_CONNECTED)
                return false;
        if (relay_now_ns(vm->ctx->relay) - since_ns >= VMM_PROBE_WAIT_NS)
                return false;
        /* Without the poll a late answer would hold nothing up: let go now rather than never. */
        return !poll || relay_timer_arm(poll, VMM_PROBE_POLL_NS) >= 0;
}

bool vmm_vm_is_frozen(const struct vmm_vm *vm)
{
        return vm->state == VM_FROZEN;
}

void vm_on_stream_frozen(void *userdata)
{
        struct vmm_vm *vm = userdata;

        /* A save freezes its own VM's streams; a stop freezes the rest (it skips frozen ones). */
        if (vm->freeze.ops) {
                if (vm->freeze.pending > 0 && --vm->freeze.pending == 0)
                        vm->freeze.ops->on_frozen(vm, vm->freeze.userdata);
        } else if (vm->quiesce_pending > 0)
                vm->quiesce_pending--;
}

static void vm_freeze_drop(struct vmm_vm *vm)
{
        vm->freeze.ops = NULL;
        vm->freeze.userdata = NULL;
        vm->freeze.pending = 0;
}

void vm_freeze_gone(struct vmm_vm *vm)
{
        const struct vmm_vm_freeze_ops *ops = vm->freeze.ops;
        void *userdata = vm->freeze.userdata;

        if (!ops)
                return;
        vm_freeze_drop(vm);
        ops->on_gone(vm, userdata);
}

void vmm_vm_thaw(struct vmm_vm *vm)
{
        vm_freeze_drop(vm);
        vm_set_state(vm, VM_ACTIVE);
        vmm_processes_thaw(vm->processes);
}

void vmm_vm_release(struct vmm_vm *vm)
{
        vm_freeze_drop(vm);
        vmm_processes_release(vm->processes);
        bridge_host_release(vm->guest.bridge);
        vm_set_state(vm, VM_SAVED);
        /* The sockets are gone: the daemon that restores the state may take the transport. */
        vmm_vm_fence_drop(vm);
        /* Saved: its record goes (the destination's now), before the blob can reach anyone. */
        if (vm->ops->on_changed)
                vm->ops->on_changed(vm, 0, NULL, true, vm->userdata);
}

void vmm_vm_observe_save(struct vmm_vm *vm, uint64_t ns)
{
        vmm_duration_observe(&vm->counters.save, ns);
}

/* ---- coming back: resume here, or restore elsewhere ---- */

static void window_on_timer(struct relay_timer *t, void *userdata)
{
        struct vmm_vm *vm = userdata;

        bridge_host_end_resume_window(vm->guest.bridge);
}

void vm_reattach_bridge_connected(struct vmm_vm *vm)
{
        struct relay *relay = vm->ctx->relay;

        if (vm->state != VM_REATTACHING)
                return;
        vm_set_state(vm, VM_ACTIVE);
        if (vm->restore_start_ns) {
                vmm_duration_observe(&vm->counters.restore, relay_now_ns(relay) - vm->restore_start_ns);
                vm->restore_start_ns = 0;
        }
        /* The new connection is in place: from now on a loss is a loss again (F3). */
        bridge_host_set_migrating(vm->guest.bridge, false);
        if (!vm->window_timer && relay_timer_new(relay, window_on_timer, vm, &vm->window_timer) < 0)
                bridge_host_end_resume_window(vm->guest.bridge);
        else if (relay_timer_arm(vm->window_timer, VMM_RESUME_WINDOW_NS) < 0)
                bridge_host_end_resume_window(vm->guest.bridge);
        log_info("vm %s: the guest is back; migration complete", vm->name);
        vmm_vm_emit(vm, VMM_EVENT_MIGRATION_COMPLETED, NULL);
}

int vmm_vm_relisten(struct vmm_vm *vm, struct vmm_error *err)
{
        int r;

        /* Fencing, before any socket is touched: a daemon that restored the state serves the VM
         * now (it holds the lock), or did since (the lock is at a newer generation). */
        r = vmm_vm_fence_take(vm, err);
        if (r >= 0)
                r = vmm_vm_fence_check(vm, vm->generation, err);
        if (r < 0) {
                vmm_vm_fence_drop(vm);
                return r;
        }
        bridge_host_begin_resume_window(vm->guest.bridge);
        r = bridge_host_relisten(vm->guest.bridge);
        if (r < 0) {
                vmm_vm_fence_drop(vm);
                return vmm_error_set(err, r, "cannot listen for the guest's bridge again: %s", strerror(-r));
        }
        vm_set_state(vm, VM_REATTACHING);
        vmm_processes_relisten(vm->processes);
        if (vm->ops->on_changed)
                vm->ops->on_changed(vm, 0, NULL, false, vm->userdata);
        log_info("vm %s: resumed on this daemon; waiting for the guest to return", vm->name);
        return 0;
}

/* ---- saved state ---- */

int vmm_vm_export(struct vmm_vm *vm, Vsockmux__State__Vm *out)
{
        int r = vmm_vm_export_head(vm, out);

        if (r >= 0)
                r = vmm_processes_export(vm->processes, out);
        if (r < 0)
                vmm_vm_export_done(out);
        return r;
}

int vmm_vm_export_pid(struct vmm_vm *vm, uint32_t pid, Vsockmux__State__Vm *out)
{
        vsockmux__state__vm__init(out);
        return vmm_processes_export_pid(vm->processes, pid, out);
}

int vmm_vm_export_head(struct vmm_vm *vm, Vsockmux__State__Vm *out)
{
        Vsockmux__State__Transport *t = calloc(1, sizeof(*t));
        int r;

        vsockmux__state__vm__init(out);
        if (!t)
                return -ENOMEM;
        vsockmux__state__transport__init(t);
        out->transport = t;
        out->name = vm->name;
        if (vm->transport.kind == RELAY_TRANSPORT_HVSOCK) {
                t->kind = VSOCKMUX__STATE__TRANSPORT_KIND__TRANSPORT_KIND_HVSOCK;
                t->uds_path = vm->transport.uds_path;
        } else {
                t->kind = VSOCKMUX__STATE__TRANSPORT_KIND__TRANSPORT_KIND_VSOCK;
                t->cid = vm->transport.cid;
        }
        out->port_floor = ports_floor(vm->guest.ports);
        out->bridge_next_id = bridge_host_next_id(vm->guest.bridge);
        out->protocol_version = 4;
        out->runtime_os_type = (char *)(bridge_host_runtime_os(vm->guest.bridge) ?: "linux");
        out->stdio_resume = vm->guest.stdio_resume;
        out->stdio_ack = vm->guest.stdio_ack;
        out->stdin_eof = vm->guest.stdin_eof;
        out->generation = vm->generation;
        r = vmm_containers_export(vm->containers, out);
        if (r < 0)
                vmm_vm_export_done(out);
        return r;
}

void vmm_vm_export_done(Vsockmux__State__Vm *out)
{
        vmm_processes_export_done(out);
        vmm_containers_export_done(out);
        free(out->transport);
        out->transport = NULL;
}

/* Everything that can fail for a reason the caller can fix happens before the bridge listens. */
static int vm_import_build(struct vmm_vm *vm, const Vsockmux__State__Vm *sv, const struct vmm_restore_io *const *io_of,
                           struct vmm_error *err)
{
        /* The floor may already be higher: a VM removed from this transport handed out more. */
        int r = sv->port_floor > ports_floor(vm->guest.ports) ? ports_raise_floor(vm->guest.ports, sv->port_floor) : 0;

        if (r < 0)
                return vmm_error_set(err, r, "cannot raise the port floor to 0x%08x", sv->port_floor);
        return vmm_processes_import(vm->processes, sv, io_of, err);
}

/* Pre-registers the waits and listens: from here on the guest may come back at any moment. */
static int vm_import_adopt(struct vmm_vm *vm, const Vsockmux__State__Vm *sv, struct vmm_error *err)
{
        int r = bridge_host_seed_next_id(vm->guest.bridge, sv->bridge_next_id);

        if (r < 0)
                return vmm_error_set(err, r, "cannot seed the bridge call ids at %llu",
                                     (unsigned long long)sv->bridge_next_id);
        /* Restored ids stay below new ones; replies that beat the re-registration are held (V1). */
        bridge_host_set_migrating(vm->guest.bridge, true);
        bridge_host_begin_resume_window(vm->guest.bridge);
        r = vmm_containers_import(vm->containers, sv, err);
        if (r < 0)
                return r;
        return vmm_processes_adopt(vm->processes, sv, err);
}

void vm_take_stdio_modes(struct vmm_vm *vm, const Vsockmux__State__Vm *sv)
{
        vm->guest.stdio_resume = sv->stdio_resume;
        vm->guest.stdio_ack = sv->stdio_resume && sv->stdio_ack;
        vm->guest.stdin_eof = sv->stdio_resume && sv->stdin_eof;
}

int vmm_vm_import(struct vmm_vm *vm, const Vsockmux__State__Vm *sv, const struct vmm_restore_io *const *io_of,
                  uint64_t start_ns, struct vmm_error *err)
{
        int r;

        vm_take_stdio_modes(vm, sv);
        /* Fencing, before anything listens: not while another daemon serves the transport, and
         * never a state older than one restored there since (a state from before generations, 0,
         * is not checked). */
        r = vmm_vm_fence_take(vm, err);
        if (r >= 0 && sv->generation)
                r = vmm_vm_fence_check(vm, sv->generation, err);
        if (r >= 0)
                r = vm_import_build(vm, sv, io_of, err);
        if (r >= 0) {
                r = vmm_vm_start_bridge(vm);
                if (r < 0)
                        vmm_error_set(err, r, "cannot listen for the guest's bridge: %s", strerror(-r));
        }
        if (r >= 0)
                r = vm_import_adopt(vm, sv, err);
        /* Last: the state is ours now, and the source's copy of it stale. */
        if (r >= 0) {
                r = vmm_vm_fence_own(vm, MAX(sv->generation, vmm_vm_fence_generation(vm)) + 1);
                if (r < 0)
                        vmm_error_set(err, r, "cannot record the new owner's generation: %s", strerror(-r));
        }
        if (r < 0)
                return r;
        vm_set_state(vm, VM_REATTACHING);
        vm->restore_start_ns = start_ns ?: 1;
        /* Processes that had finished before the save are reported as they were. */
        vmm_processes_report_ready(vm->processes);
        return 0;
}
