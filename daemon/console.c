/* daemon/console.c: the consoles of terminal processes (ResizeConsole); the console itself lives in the guest. */
#include <errno.h>
#include <stdlib.h>

#include "daemon/process-private.h"

struct vmm_resize_op {
        vmm_done_fn fn;
        void *userdata;
        uint32_t pid;
        bool vm_level; /* aimed at a process outside any container */
};

static void vmm_on_resize(const struct bridge_result *res, void *userdata)
{
        struct vmm_resize_op *op = userdata;

        if (op->vm_level && res->hresult == BRIDGE_HR_SYSTEM_NOT_FOUND) {
                char msg[192];

                /* hcsshim's guest looks for the console only inside containers, as for a signal. */
                process_vm_level_refusal(msg, sizeof(msg), "consoles resize only", op->pid, "ResizeConsole",
                                         (uint32_t)res->hresult);
                op->fn(-EOPNOTSUPP, msg, op->userdata);
        } else
                op->fn(res->error, res->message, op->userdata);
        free(op);
}

int vmm_processes_resize(struct vmm_processes *t, uint32_t pid, uint16_t height, uint16_t width, vmm_done_fn fn,
                         void *userdata)
{
        struct vmm_process *p = vmm_processes_find(t, pid);
        struct vmm_resize_op *op;
        int r;

        if (height == 0 || width == 0)
                return -EINVAL;
        if (!p)
                return -ENOENT;
        if (!p->terminal)
                return -ENOTTY;
        if (p->exit_known || p->state == VMM_PROCESS_PENDING || p->state == VMM_PROCESS_STARTING)
                return -ESRCH;
        op = calloc(1, sizeof(*op));
        if (!op)
                return -ENOMEM;
        *op = (struct vmm_resize_op){ .fn = fn, .userdata = userdata, .pid = pid, .vm_level = !p->container_id[0] };
        r = bridge_host_resize(t->guest->bridge, p->container_id, pid, height, width, vmm_on_resize, op);
        if (r < 0)
                free(op);
        return r;
}
