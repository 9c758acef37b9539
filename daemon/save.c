/* daemon/save.c: save on the source (freeze, frame the VM's own state as the blob, release) and resume (roll a save back). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/save-restore.h"
#include "daemon/savestate.h"
#include "daemon/vm.h"
#include "util/log.h"

/* A stalled endpoint could hold a freeze for ever; past this the save fails and nothing changes. */
#define VMM_SAVE_FREEZE_TIMEOUT_NS (10ull * 1000000000ull)

struct save_op {
        struct vmm_vm *vm; /* NULL: the VM went away while save_finish() was queued */
        vmm_save_fn fn;
        void *userdata;
        uint64_t start_ns;
        uint64_t frozen_ns;        /* finishing: when the freeze was done */
        struct relay_timer *timer; /* the freeze's timeout; once finishing, the probes' poll */
        bool finishing;
};

static struct save_op *save_op_free(struct save_op *op)
{
        if (op) {
                relay_timer_free(op->timer);
                free(op);
        }
        return NULL;
}

/* The frame around the VM's own state: the schema and when. */
static int save_encode(struct vmm_vm *vm, uint8_t **ret_blob, size_t *ret_len)
{
        Vsockmux__State__SavedState s;
        Vsockmux__State__Vm v;
        struct timespec ts;
        int r;

        vsockmux__state__saved_state__init(&s);
        clock_gettime(CLOCK_REALTIME, &ts);
        s.schema_version = SAVESTATE_SCHEMA_VERSION;
        s.saved_at_unix_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        s.vm = &v;
        r = vmm_vm_export(vm, &v);
        if (r < 0)
                return r;
        r = savestate_encode(&s, ret_blob, ret_len);
        vmm_vm_export_done(&v);
        return r;
}

static void save_fail(struct save_op *op, int error, const char *message)
{
        struct vmm_vm *vm = op->vm;

        log_warn("vm %s: save failed: %s", vmm_vm_name(vm), message);
        vmm_vm_thaw(vm);
        vmm_vm_set_migrating(vm, false);
        vmm_vm_emit(vm, VMM_EVENT_MIGRATION_FAILED, message);
        op->fn(error, message, NULL, 0, 0, op->userdata);
        save_op_free(op);
}

static void save_finish(void *userdata)
{
        struct save_op *op = userdata;
        struct vmm_vm *vm = op->vm;
        _cleanup_free_ uint8_t *blob = NULL;
        size_t len = 0;
        char msg[128];
        unsigned n;
        int r;

        if (!vm) {
                save_op_free(op);
                return;
        }
        /* A save right after a reconnect: the guest's probes first (vmm_vm_probes_wait()). */
        if (vmm_vm_probes_wait(vm, op->frozen_ns, op->timer))
                return;
        r = save_encode(vm, &blob, &len);
        if (r < 0) {
                snprintf(msg, sizeof(msg), "cannot encode the saved state: %s", strerror(-r));
                save_fail(op, r, msg);
                return;
        }
        vmm_vm_release(vm);
        vmm_vm_observe_save(vm, relay_now_ns(vmm_vm_relay(vm)) - op->start_ns);
        n = vmm_vm_process_count(vm);
        log_info("vm %s: saved: %u processes, %zu bytes; listeners and guest connections released", vmm_vm_name(vm), n,
                 len);
        op->fn(0, "", blob, len, n, op->userdata);
        save_op_free(op);
}

static void save_on_frozen(struct vmm_vm *vm, void *userdata)
{
        struct save_op *op = userdata;

        if (op->finishing)
                return;
        op->finishing = true;
        op->frozen_ns = relay_now_ns(vmm_vm_relay(vm));
        relay_timer_disarm(op->timer);
        if (relay_defer(vmm_vm_relay(vm), save_finish, op) < 0)
                save_fail(op, -ENOMEM, "cannot schedule the save");
}

static void save_on_gone(struct vmm_vm *vm, void *userdata)
{
        struct save_op *op = userdata;

        op->fn(-ESHUTDOWN, "the VM was removed during the save", NULL, 0, 0, op->userdata);
        if (op->finishing) {
                /* save_finish() is queued with op, or its probes' poll armed: it frees it. */
                op->vm = NULL;
                return;
        }
        save_op_free(op);
}

static const struct vmm_vm_freeze_ops save_freeze_ops = {
        .on_frozen = save_on_frozen,
        .on_gone = save_on_gone,
};

static void save_on_timeout(struct relay_timer *t, void *userdata)
{
        struct save_op *op = userdata;

        if (op->finishing) {
                save_finish(op);
                return;
        }
        save_fail(op, -ETIMEDOUT, "a stream could not flush to its endpoint in time (stalled endpoint?)");
}

static int save_check(struct vmm_vm *vm, struct vmm_error *err)
{
        const char *name = vmm_vm_name(vm);

        if (vmm_vm_is_saved(vm))
                return vmm_error_set(err, -EALREADY, "VM %s is saved already", name);
        if (vmm_vm_is_frozen(vm))
                return vmm_error_set(err, -EBUSY, "VM %s is being saved", name);
        /* Its waits are only pre-registered until the guest is back: nothing to hand on yet. */
        if (vmm_vm_is_reattaching(vm))
                return vmm_error_set(err, -EBUSY,
                                     "VM %s was restored and its guest has not reconnected yet; retry "
                                     "when `vsockmux vm ls` shows its bridge connected",
                                     name);
        /* Without a pid the destination could never find the process again. */
        if (vmm_vm_exec_starting(vm))
                return vmm_error_set(err, -EBUSY, "an exec is starting in VM %s; retry when it has a pid", name);
        return 0;
}

int vmm_save(struct vmm_vm *vm, vmm_save_fn fn, void *userdata, struct vmm_error *err)
{
        struct relay *relay = vmm_vm_relay(vm);
        struct save_op *op;
        unsigned pending = 0;
        int r;

        r = save_check(vm, err);
        if (r < 0)
                return r;
        op = calloc(1, sizeof(*op));
        if (!op)
                return vmm_error_set(err, -ENOMEM, "%s", strerror(ENOMEM));
        r = relay_timer_new(relay, save_on_timeout, op, &op->timer);
        if (r < 0) {
                free(op);
                return vmm_error_set(err, r, "%s", strerror(-r));
        }
        *op = (struct save_op){
                .vm = vm, .fn = fn, .userdata = userdata, .timer = op->timer, .start_ns = relay_now_ns(relay)
        };
        vmm_vm_set_migrating(vm, true);
        vmm_vm_emit(vm, VMM_EVENT_MIGRATION_STARTED, "save");
        r = vmm_vm_freeze(vm, &save_freeze_ops, op, &pending);
        if (r >= 0 && pending == 0) {
                op->finishing = true;
                op->frozen_ns = op->start_ns;
                r = relay_defer(relay, save_finish, op);
        } else if (r >= 0)
                r = relay_timer_arm(op->timer, VMM_SAVE_FREEZE_TIMEOUT_NS);
        if (r < 0) {
                vmm_vm_thaw(vm);
                vmm_vm_set_migrating(vm, false);
                save_op_free(op);
                return vmm_error_set(err, r, "cannot schedule the save: %s", strerror(-r));
        }
        return 0;
}

int vmm_resume(struct vmm_vm *vm, struct vmm_error *err)
{
        if (!vmm_vm_is_saved(vm))
                return vmm_error_set(err, -EINVAL, "VM %s is not saved", vmm_vm_name(vm));
        return vmm_vm_relisten(vm, err);
}
