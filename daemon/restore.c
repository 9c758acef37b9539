/* daemon/restore.c: restore on the destination: decode and check the blob (V3) before the new VM imports it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/save-restore.h"
#include "daemon/process.h"
#include "daemon/savestate.h"
#include "daemon/vm.h"

struct vmm_restore {
        savestate_msg *msg;
        const char *name;
        struct relay_transport transport;
        const struct vmm_restore_io *io;
        size_t n_io;
        const struct vmm_restore_io **io_of; /* the check's match of io to the saved processes */
};

struct vmm_restore *vmm_restore_free(struct vmm_restore *rs)
{
        if (rs) {
                savestate_msg_free(rs->msg);
                free(rs->io_of);
                free(rs);
        }
        return NULL;
}

static void restore_transport(const Vsockmux__State__Transport *st, struct relay_transport *ret)
{
        *ret = (struct relay_transport){ 0 };
        if (st->kind == VSOCKMUX__STATE__TRANSPORT_KIND__TRANSPORT_KIND_HVSOCK) {
                ret->kind = RELAY_TRANSPORT_HVSOCK;
                snprintf(ret->uds_path, sizeof(ret->uds_path), "%s", st->uds_path);
        } else {
                ret->kind = RELAY_TRANSPORT_VSOCK;
                ret->cid = st->cid;
        }
}

int vmm_restore_open(const uint8_t *blob, size_t len, const char *name, const struct relay_transport *t,
                     const struct vmm_restore_io *io, size_t n_io, struct vmm_restore **ret, struct vmm_error *err)
{
        _cleanup_(vmm_restore_freep) struct vmm_restore *rs = calloc(1, sizeof(*rs));
        char why[VMM_ERROR_MESSAGE_MAX] = "";
        int r;

        if (!rs)
                return vmm_error_set(err, -ENOMEM, "%s", strerror(ENOMEM));
        r = savestate_decode(blob, len, &rs->msg, why, sizeof(why));
        if (r < 0)
                return vmm_error_set(err, r, "%s", why);
        rs->name = name && name[0] ? name : rs->msg->vm->name;
        if (t)
                rs->transport = *t;
        else
                restore_transport(rs->msg->vm->transport, &rs->transport);
        rs->io = io;
        rs->n_io = n_io;
        *ret = TAKE_PTR(rs);
        return 0;
}

const char *vmm_restore_name(const struct vmm_restore *rs)
{
        return rs->name;
}

const struct relay_transport *vmm_restore_transport(const struct vmm_restore *rs)
{
        return &rs->transport;
}

int vmm_restore_check(struct vmm_restore *rs, struct vmm_error *err)
{
        free(rs->io_of);
        rs->io_of = NULL;
        return vmm_processes_check_io(rs->msg->vm, rs->io, rs->n_io, &rs->io_of, err);
}

int vmm_restore_apply(struct vmm_restore *rs, struct vmm_vm *vm, uint64_t start_ns, struct vmm_error *err)
{
        /* Unchecked, no entry would reach its process. */
        if (!rs->io_of)
                return vmm_error_set(err, -EINVAL, "a restore applied before its check");
        return vmm_vm_import(vm, rs->msg->vm, rs->io_of, start_ns, err);
}

void vmm_restore_summary(const struct vmm_restore *rs, size_t *ret_processes, uint32_t *ret_floor,
                         uint64_t *ret_next_id)
{
        *ret_processes = rs->msg->vm->n_processes;
        *ret_floor = rs->msg->vm->port_floor;
        *ret_next_id = rs->msg->vm->bridge_next_id;
}
