/* daemon/vm-fence.c: a VM's hold on its transport's fence: taken before anything listens, let go
 * when its state is handed out, checked against the generation before a resume or a restore. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "daemon/fence.h"
#include "daemon/vm-private.h"
#include "util/log.h"

static int vm_fence_path(struct vmm_vm *vm, char *buf, size_t len)
{
        return fence_path(&vm->listen_transport, vm->ctx->cfg->state_dir, buf, len);
}

static const char *vm_transport_name(const struct vmm_vm *vm, char *buf, size_t len)
{
        if (vm->transport.kind == RELAY_TRANSPORT_HVSOCK)
                return vm->transport.uds_path;
        snprintf(buf, len, "CID %" PRIu32, vm->transport.cid);
        return buf;
}

int vmm_vm_fence_take(struct vmm_vm *vm, struct vmm_error *err)
{
        char path[sizeof(vm->listen_transport.uds_path) + 16], what[32];
        uint64_t gen = 0;
        pid_t pid = 0;
        int r;

        if (vm->fence)
                return 0;
        r = vm_fence_path(vm, path, sizeof(path));
        if (r >= 0)
                r = fence_acquire(path, &vm->fence);
        if (r == -EBUSY) {
                (void)fence_peek(path, &gen, &pid);
                return vmm_error_set(
                        err, r, "another vsockmuxd (pid %d) serves %s at generation %" PRIu64 "; one VM has one owner",
                        (int)pid, vm_transport_name(vm, what, sizeof(what)), gen);
        }
        if (r < 0)
                return vmm_error_set(err, r, "cannot take the lock of %s: %s",
                                     vm_transport_name(vm, what, sizeof(what)),
                                     r == -EBADMSG ? "its lock file holds something else" : strerror(-r));
        /* The lock goes with its holder's death: a socket file still at a port is a dead daemon's,
         * even one whose listeners answer for a while after a SIGKILL. */
        vm->listen_transport.owns_paths = true;
        return 0;
}

void vmm_vm_fence_drop(struct vmm_vm *vm)
{
        vm->fence = fence_release(vm->fence);
        vm->listen_transport.owns_paths = false;
}

uint64_t vmm_vm_fence_generation(const struct vmm_vm *vm)
{
        return vm->fence ? fence_generation(vm->fence) : 0;
}

int vmm_vm_fence_own(struct vmm_vm *vm, uint64_t generation)
{
        int r = fence_set_generation(vm->fence, generation);

        if (r >= 0)
                vm->generation = generation;
        return r;
}

int vmm_vm_fence_check(struct vmm_vm *vm, uint64_t generation, struct vmm_error *err)
{
        uint64_t have = vmm_vm_fence_generation(vm);

        if (have <= generation)
                return 0;
        return vmm_error_set(err, -ESTALE,
                             "VM %s was taken over elsewhere: its lock is at generation %" PRIu64
                             ", this state is generation %" PRIu64 " (restored by another daemon since)",
                             vm->name, have, generation);
}
