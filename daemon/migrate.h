/* daemon/migrate.h: struct migrations owns the live migrations this daemon runs for Migrate calls (each driven by a vsockmux-vmhelper child, daemon/vmhelper.h); borrows the relay, the vmm and the calls until it completes them. */
#pragma once

#include <sys/types.h>

#include "control.pb-c.h"
#include "control/server.h"
#include "daemon/vmm.h"

#ifndef VSOCKMUX_VM_HELPER_DEFAULT
#define VSOCKMUX_VM_HELPER_DEFAULT "/usr/libexec/vsockmux-vmhelper"
#endif

struct migrations;

/* Upward: a MIGRATION_* event for the Events subscribers (the callee stamps its time). */
struct migrations_ops {
        void (*publish)(Vsockmux__V1__Event *ev, void *userdata);
};

struct migrations_config {
        const char *helper_path; /* NULL: VSOCKMUX_VM_HELPER_DEFAULT */
        uid_t owner_uid;         /* besides root, the one uid that may call Migrate */
};

int migrations_new(struct relay *r, struct vmm *m, const struct migrations_config *cfg,
                   const struct migrations_ops *ops, void *userdata, struct migrations **ret);

/* Kills every helper still running (the caller freed the control server first, so no call is
 * left to answer). A VM saved for a migration stays saved. Accepts NULL. */
struct migrations *migrations_free(struct migrations *ms);
DEFINE_CLEANUP(struct migrations *, migrations_free);

/* The Migrate method: starts a migration (answered at its end) or, with req->abort, aborts one. */
int migrations_on_call(struct migrations *ms, struct control_call *call, const Vsockmux__V1__MigrateRequest *req);
