/* daemon/container.h: the container room: struct vmm_containers, a VM's containers (create, shutdown, the exit notification that ends one); borrows the VM's struct vmm_guest. */
#pragma once

#include "daemon/guest.h"
#include "daemon/vmm-types.h"
#include "state.pb-c.h"

struct vmm_containers;

int vmm_containers_new(const struct vmm_guest *guest, struct vmm_containers **ret);
struct vmm_containers *vmm_containers_free(struct vmm_containers *c);
unsigned vmm_containers_count(const struct vmm_containers *c);

/* Creates the container and watches its exit notification. */
int vmm_containers_create(struct vmm_containers *c, const char *id, const char *config_json, vmm_done_fn fn,
                          void *userdata);
int vmm_containers_shutdown(struct vmm_containers *c, const char *id, bool force, vmm_done_fn fn, void *userdata);

/* Saved state: the ids out (borrowed until the containers change; undo with _export_done), and
 * back in, each watched again. */
int vmm_containers_export(struct vmm_containers *c, Vsockmux__State__Vm *out);
void vmm_containers_export_done(Vsockmux__State__Vm *out);
int vmm_containers_import(struct vmm_containers *c, const Vsockmux__State__Vm *sv, struct vmm_error *err);
