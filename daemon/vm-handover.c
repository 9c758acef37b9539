/* daemon/vm-handover.c: a VM's part of a live upgrade: hold it quiet, hand its live connections and state out (the old daemon), and take them in with nothing redialled or renegotiated (the new one). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/vm-private.h"
#include "util/log.h"

/* ---- out ---- */

int vmm_vm_check_hand_over(const struct vmm_vm *vm, struct vmm_error *err)
{
        if (vm->state != VM_ACTIVE)
                return vmm_error_set(err, -EBUSY, "VM %s is being saved, moved or restored", vm->name);
        /* One AF_VSOCK socket per port serves every VM: it cannot go VM by VM. */
        if (vm->transport.kind != RELAY_TRANSPORT_HVSOCK)
                return vmm_error_set(err, -EOPNOTSUPP,
                                     "VM %s is on AF_VSOCK, which a live upgrade does not hand over yet", vm->name);
        if (!bridge_conn_can_hand_over(bridge_host_conn(vm->guest.bridge)))
                return vmm_error_set(err, -EBUSY,
                                     "VM %s's bridge is negotiating or has a call other than a wait outstanding; retry",
                                     vm->name);
        return vmm_processes_check_hand_over(vm->processes, err);
}

static void hold_on_bridge_held(struct bridge_host *h, void *userdata)
{
        struct vmm_vm *vm = userdata;

        if (vm->handover.ops)
                vm->handover.ops->on_frozen(vm, vm->handover.userdata);
}

static void hold_on_frozen(struct vmm_vm *vm, void *userdata)
{
        int r = bridge_host_hold(vm->guest.bridge, hold_on_bridge_held, vm);

        /* A call sent while the streams flushed: the upgrade fails and the VM serves on. */
        if (r < 0 && vm->handover.ops)
                vm->handover.ops->on_gone(vm, vm->handover.userdata);
}

static void hold_on_gone(struct vmm_vm *vm, void *userdata)
{
        const struct vmm_vm_freeze_ops *ops = vm->handover.ops;

        vm->handover.ops = NULL;
        if (ops)
                ops->on_gone(vm, vm->handover.userdata);
}

static const struct vmm_vm_freeze_ops hold_freeze_ops = {
        .on_frozen = hold_on_frozen,
        .on_gone = hold_on_gone,
};

static void hold_frozen_now(void *userdata)
{
        struct vmm_vm *vm = userdata;

        if (vm->state == VM_FROZEN && vm->handover.ops)
                hold_on_frozen(vm, NULL);
}

int vmm_vm_hold(struct vmm_vm *vm, const struct vmm_vm_freeze_ops *ops, void *userdata, struct vmm_error *err)
{
        unsigned pending = 0;
        int r = vmm_vm_check_hand_over(vm, err);

        if (r < 0)
                return r;
        vm->handover.ops = ops;
        vm->handover.userdata = userdata;
        /* No new execs or container calls meanwhile; a bridge loss keeps the calls. */
        bridge_host_set_migrating(vm->guest.bridge, true);
        r = vmm_vm_freeze(vm, &hold_freeze_ops, NULL, &pending);
        if (r >= 0 && pending == 0)
                r = relay_defer(vm->ctx->relay, hold_frozen_now, vm);
        if (r < 0) {
                vmm_vm_unhold(vm);
                return vmm_error_set(err, r, "cannot hold VM %s: %s", vm->name, strerror(-r));
        }
        return 0;
}

void vmm_vm_unhold(struct vmm_vm *vm)
{
        vm->handover.ops = NULL;
        if (vm->state != VM_FROZEN)
                return;
        bridge_host_unhold(vm->guest.bridge);
        bridge_host_set_migrating(vm->guest.bridge, false);
        vmm_vm_thaw(vm);
}

int vmm_vm_hand_over(struct vmm_vm *vm, Vsockmux__State__Vm *out, struct vmm_fds *fds, struct vmm_error *err)
{
        struct bridge_host_handover *hv = &vm->handover.bridge;
        int r;

        if (vm->state != VM_FROZEN)
                return vmm_error_set(err, -EINVAL, "VM %s is not held", vm->name);
        r = vmm_vm_export(vm, out);
        if (r < 0)
                return vmm_error_set(err, r, "cannot export VM %s: %s", vm->name, strerror(-r));
        r = bridge_host_hand_over(vm->guest.bridge, hv);
        if (r < 0) {
                vmm_vm_export_done(out);
                return vmm_error_set(err, r, "cannot hand over VM %s's bridge: %s", vm->name, strerror(-r));
        }
        /* From here nothing is live here any more, whatever follows. */
        vm->handover.ops = NULL;
        vm_set_state(vm, VM_HANDED_OVER);
        out->bridge_listener_fd = out->bridge_guest_fd = -1;
        out->bridge_generation = hv->generation;
        out->bridge_stdio_resume = hv->stdio_resume;
        out->bridge_stdio_ack = hv->stdio_ack;
        out->bridge_stdin_eof = hv->stdin_eof;
        out->bridge_next_id = hv->next_id;
        out->bridge_rx = (ProtobufCBinaryData){ .len = hv->rx_len, .data = hv->rx };
        out->bridge_tx = (ProtobufCBinaryData){ .len = hv->tx_len, .data = hv->tx };
        r = vmm_fds_add(fds, TAKE_FD(hv->listener_fd), &out->bridge_listener_fd);
        if (r >= 0 && hv->guest_fd >= 0)
                r = vmm_fds_add(fds, TAKE_FD(hv->guest_fd), &out->bridge_guest_fd);
        if (r >= 0)
                r = vmm_processes_hand_over(vm->processes, out, fds);
        /* The transport is the new daemon's to lock. */
        vmm_vm_fence_drop(vm);
        if (r < 0) {
                vmm_vm_export_done(out);
                return vmm_error_set(err, r, "cannot hand over VM %s's streams: %s", vm->name, strerror(-r));
        }
        log_info("vm %s: handed over live: %u processes, %zu fds", vm->name, vmm_vm_process_count(vm), fds->n);
        return 0;
}

bool vmm_vm_is_handed_over(const struct vmm_vm *vm)
{
        return vm->state == VM_HANDED_OVER;
}

void vmm_vm_take_waiters(struct vmm_vm *dst, struct vmm_vm *src)
{
        vmm_processes_take_waiters(dst->processes, src->processes);
}

/* ---- in ---- */

int vmm_vm_adopt(struct vmm_vm *vm, const Vsockmux__State__Vm *sv, int *fds, size_t n_fds, struct vmm_error *err)
{
        struct bridge_host_handover hv = {
                .listener_fd = vmm_fds_take(fds, n_fds, sv->bridge_listener_fd),
                .guest_fd = vmm_fds_take(fds, n_fds, sv->bridge_guest_fd),
                .rx = sv->bridge_rx.data,
                .rx_len = sv->bridge_rx.len,
                .tx = sv->bridge_tx.data,
                .tx_len = sv->bridge_tx.len,
                .runtime_os = sv->runtime_os_type,
                .stdio_resume = sv->bridge_stdio_resume,
                .stdio_ack = sv->bridge_stdio_ack,
                .stdin_eof = sv->bridge_stdin_eof,
                .generation = sv->bridge_generation,
                .next_id = sv->bridge_next_id,
        };
        int r;

        vm_take_stdio_modes(vm, sv);
        r = vmm_vm_fence_take(vm, err);
        if (r >= 0 && sv->port_floor > ports_floor(vm->guest.ports)) {
                r = ports_raise_floor(vm->guest.ports, sv->port_floor);
                if (r < 0)
                        vmm_error_set(err, r, "cannot raise the port floor to 0x%08x", sv->port_floor);
        }
        if (r >= 0)
                r = vmm_processes_import(vm->processes, sv, NULL, err);
        if (r >= 0) {
                r = vm_adopt_bridge(vm, &hv);
                if (r < 0)
                        vmm_error_set(err, r, "cannot take over VM %s's bridge: %s", vm->name, strerror(-r));
        }
        /* The buffers are sv's, the fds ours until adopted. */
        safe_close(hv.listener_fd);
        safe_close(hv.guest_fd);
        if (r >= 0)
                r = vmm_containers_import(vm->containers, sv, err);
        if (r >= 0)
                r = vmm_processes_adopt_live(vm->processes, sv, fds, n_fds, err);
        if (r >= 0) {
                vm->generation = sv->generation;
                r = vmm_vm_fence_own(vm, MAX(sv->generation, vmm_vm_fence_generation(vm)));
                if (r < 0)
                        vmm_error_set(err, r, "cannot record the owner's generation: %s", strerror(-r));
        }
        if (r < 0)
                return r;
        vmm_processes_report_ready(vm->processes);
        return 0;
}
