/* daemon/save-restore.h: the handover room's save (freeze, frame the VM's state as one blob, release), resume (roll a save back) and restore (check a blob, then have a new VM import it). */
#pragma once

#include "daemon/vmm-types.h"

/* Marks the VM migrating (new execs are refused), freezes its streams (nothing more is read from
 * the guest; what was read is flushed to the endpoints), records the counts, then releases the
 * VM's listeners and guest connections so another daemon can take them. The VM stays here, saved,
 * until it is removed or resumed. An error return means nothing changed and fn will not run. */
int vmm_save(struct vmm_vm *vm, vmm_save_fn fn, void *userdata, struct vmm_error *err);

/* Rolls back a save that was not restored elsewhere: listens again, re-adopts the still
 * outstanding waits and resumes every stream where it stopped. */
int vmm_resume(struct vmm_vm *vm, struct vmm_error *err);

/* A decoded, checked blob on its way into a new VM. */
struct vmm_restore;

/* Checks the blob and the endpoints against the saved ports before anything listens (V3). name
 * and t override the saved ones when non-NULL; io must outlive the restore. */
int vmm_restore_open(const uint8_t *blob, size_t len, const char *name, const struct relay_transport *t,
                     const struct vmm_restore_io *io, size_t n_io, struct vmm_restore **ret, struct vmm_error *err);
const char *vmm_restore_name(const struct vmm_restore *rs);
const struct relay_transport *vmm_restore_transport(const struct vmm_restore *rs);
/* V3: endpoints that do not match the saved ports are refused before anything listens; what
 * matched is kept for vmm_restore_apply(). */
int vmm_restore_check(struct vmm_restore *rs, struct vmm_error *err);
/* Fills a new VM, not yet published, from the blob (see vmm_vm_import()), after the check. */
int vmm_restore_apply(struct vmm_restore *rs, struct vmm_vm *vm, uint64_t start_ns, struct vmm_error *err);
/* For the log line: the saved process count, port floor and next call id. */
void vmm_restore_summary(const struct vmm_restore *rs, size_t *ret_processes, uint32_t *ret_floor,
                         uint64_t *ret_next_id);
struct vmm_restore *vmm_restore_free(struct vmm_restore *rs);
DEFINE_CLEANUP(struct vmm_restore *, vmm_restore_free);
