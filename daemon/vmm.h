/* daemon/vmm.h: the manager room: struct vmm owns every VM (the list, the caps, the port floors of removed VMs, the events) and the context it lends them; borrows the relay. Includes the rooms below for its callers. */
#pragma once

#include "daemon/save-restore.h"
#include "daemon/process.h"
#include "daemon/vm.h"
#include "daemon/vmm-types.h"

void vmm_config_default(struct vmm_config *c);

int vmm_new(struct relay *r, const struct vmm_config *cfg, vmm_event_fn ev, void *userdata, struct vmm **ret);
/* Stopping: freezes every stream so what was read reaches its endpoint. Returns how many streams
 * are still flushing, and the VMs whose guest has reconnect probes to answer before its bridge
 * connection may close (vmm_vm_probes_wait()); run the loop until vmm_quiesce_pending() is 0 (or a
 * deadline), then free. */
unsigned vmm_quiesce(struct vmm *m);
unsigned vmm_quiesce_pending(const struct vmm *m);

/* A clean, recorded stop (SIGTERM), after vmm_quiesce(): every VM's record is written with its
 * final offsets, waiters hear that vsockmuxd stopped (exit NULL) and execs without a pid fail with
 * message; vmm_free() then reports no exit, the guests keep their processes and redial. Returns the
 * VMs so recorded; 0 without a record. */
unsigned vmm_stop_recorded(struct vmm *m, const char *message);
/* A live upgrade: every record write already queued lands now and none follows, so the new
 * daemon's writes of the VMs it adopts are the last; resume (a rollback) marks every VM again. */
void vmm_records_pause(struct vmm *m);
void vmm_records_resume(struct vmm *m);
/* At start: every VM of the record (daemon/record.h) is restored as from a save and waits for its
 * guest to redial; one log line says what was found. */
int vmm_recover(struct vmm *m);

/* Removes every VM: their processes end as lost ("daemon stopping") and their waiters are told. */
struct vmm *vmm_free(struct vmm *m);
DEFINE_CLEANUP(struct vmm *, vmm_free);

/* The caps a reload may change (SIGHUP's --limits-file). What is already running stays; past a
 * lowered cap new VMs, execs and attach clients are refused as at the cap. An attach cap applies to
 * processes started after it. */
struct vmm_limits {
        unsigned max_vms, max_processes, max_streams, attach_max_clients;
};
int vmm_set_limits(struct vmm *m, const struct vmm_limits *l);

struct relay *vmm_relay(struct vmm *m);

/* -EEXIST for a taken name, -EINVAL for a bad name, -EUSERS over max_vms, -EPERM for an hvsock
 * path outside the configured root (or a symlink, or with "..": logged), -EBUSY when another daemon
 * holds the transport's lock (daemon/fence.h: logged with its pid), or relay_listen()'s errors. */
int vmm_vm_add(struct vmm *m, const char *name, const struct relay_transport *t, struct vmm_vm **ret);
int vmm_vm_remove(struct vmm *m, const char *name);
/* The control API's removal: vmm_vm_remove() once the guest answered its reconnect probes
 * (vmm_vm_probes_wait(): at most VMM_PROBE_WAIT_NS; at once, inside the call, when there are none,
 * as always for our guest), then fn (error 0). Meanwhile the VM is listed and serves as before; a
 * removal otherwise (vmm_vm_remove(), a stop) completes it too, and a VM handed over to a new
 * daemon meanwhile is left to that daemon (-EAGAIN). -ENOENT for an unknown name (fn does not run). */
int vmm_vm_remove_when_answered(struct vmm *m, const char *name, vmm_done_fn fn, void *userdata);
struct vmm_vm *vmm_vm_find(struct vmm *m, const char *name);
/* Iteration in insertion order; NULL ends it. */
struct vmm_vm *vmm_vm_next(struct vmm *m, struct vmm_vm *prev);
unsigned vmm_vm_count(const struct vmm *m);

void vmm_get_stats(struct vmm *m, struct vmm_stats *ret);

/* Builds a VM from a saved blob: checks it and the endpoints against the saved ports before
 * anything listens (V3), raises the port floor, seeds the call ids, re-listens on exactly the
 * saved ports, pre-registers each outstanding wait and accepts the guest's return. name and t
 * override the saved ones when non-NULL. */
int vmm_restore(struct vmm *m, const uint8_t *blob, size_t len, const char *name, const struct relay_transport *t,
                const struct vmm_restore_io *io, size_t n_io, struct vmm_vm **ret, struct vmm_error *err);
/* A live upgrade's new daemon: the VM sv, handed over with its connections in fds (each taken is
 * set to -1), served here at once; the guest notices nothing. */
int vmm_adopt(struct vmm *m, const Vsockmux__State__Vm *sv, int *fds, size_t n_fds, struct vmm_vm **ret,
              struct vmm_error *err);
/* A live upgrade rolled back after the hand-over (the new daemon did not take over): the VM
 * handed out as sv, still here as handed over, is built again from sv and the fds this daemon kept,
 * and serves on; the calls waiting on its processes go on waiting. */
int vmm_take_back(struct vmm *m, const Vsockmux__State__Vm *sv, int *fds, size_t n_fds, struct vmm_error *err);
