/* daemon/vmhelper.h: struct vmhelper owns one vsockmux-vmhelper child, its socketpair channel on the loop and its pidfd; borrows the relay. */
#pragma once

#include <sys/types.h>

#include "relay/relay.h"
#include "vm/helper-proto.h"

#define VMHELPER_WHY_MAX 96u

struct vmhelper;

struct vmhelper_ops {
        /* Each message the helper sends, in order (parsed and checked; borrowed for the call).
         * Do not free h here: on_exit follows once it is gone. */
        void (*on_message)(struct vmhelper *h, const vmhelper_msg *m, void *userdata);
        /* Exactly once, when the helper is gone: its channel closed and the process reaped. why:
         * "exited 0", "killed by SIGKILL", "sent a malformed frame", ... Free h here or later. */
        void (*on_exit)(struct vmhelper *h, const char *why, void *userdata);
};

/* Starts path with its end of a socketpair as fd VMHELPER_FD, stdin /dev/null, the daemon's
 * stdout, stderr and environment. Returns 0 or -errno (the program could not be started). */
int vmhelper_spawn(struct relay *r, const char *path, const struct vmhelper_ops *ops, void *userdata,
                   struct vmhelper **ret);

/* Queues one message; -EPIPE once the helper is gone. */
int vmhelper_send(struct vmhelper *h, const vmhelper_msg *m);

pid_t vmhelper_pid(const struct vmhelper *h);

/* Kills the helper if it still runs (SIGKILL) and reaps it; no callback after. Accepts NULL. */
struct vmhelper *vmhelper_free(struct vmhelper *h);
DEFINE_CLEANUP(struct vmhelper *, vmhelper_free);
