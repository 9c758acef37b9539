/* daemon/context.h: struct vmm_context, what the manager lends every VM and process (the loop, the configuration, the opener, the attach and exit directories, the event sink); the manager owns it and outlives them. */
#pragma once

#include "daemon/vmm-types.h"

struct vmm_context {
        struct relay *relay;
        const struct vmm_config *cfg;
        struct opener *opener;
        const char *attach_dir;
        int exit_dir_fd;       /* -1: no exit files */
        vmm_event_fn event_fn; /* the manager's caller's: events go straight out */
        void *event_userdata;
};

static inline void vmm_context_emit(const struct vmm_context *ctx, enum vmm_event_kind kind, const char *vm,
                                    const char *container_id, uint32_t pid, const struct vmm_exit *exit,
                                    const char *message)
{
        struct vmm_event e = {
                .kind = kind,
                .vm = vm,
                .container_id = container_id,
                .pid = pid,
                .exit = exit,
                .message = message,
        };

        if (ctx->event_fn)
                ctx->event_fn(&e, ctx->event_userdata);
}
