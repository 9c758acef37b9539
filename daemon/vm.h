/* daemon/vm.h: the vm room: struct vmm_vm, one VM with its bridge, ports, containers and process table, and how it freezes, lets go and comes back for a handover; borrows the manager's struct vmm_context. */
#pragma once

#include "daemon/context.h"
#include "daemon/vmm-types.h"
#include "state.pb-c.h"
#include "util/list.h"

/* Upward calls to the manager, which hands these in. */
struct vmm_vm_ops {
        void (*on_cap_hit)(enum vmm_cap cap, void *userdata);
        /* Stdio streams held daemon-wide (each VM's count, kept as they change). */
        unsigned (*streams_held)(void *userdata);
        /* The VM's recorded content changed (daemon/record.h): process pid (gone_exec_id: that one
         * of its entries was forgotten), or (0) the VM's own fields; now: make it durable before
         * returning, else once per loop turn. true: a record is kept, and vmm_vm_record_written()
         * follows each write. */
        bool (*on_changed)(struct vmm_vm *vm, uint32_t pid, const char *gone_exec_id, bool now, void *userdata);
};

/* A VM named name on t, its stdio ports starting above port_floor (0: none). -EPERM for an hvsock
 * path outside the configured root (or a symlink, or with "..": logged). It has no bridge yet. */
int vmm_vm_new(const struct vmm_context *ctx, const struct vmm_vm_ops *ops, void *userdata, const char *name,
               const struct relay_transport *t, uint32_t port_floor, struct vmm_vm **ret);
/* Fencing, one owner per transport (vm-fence.c, daemon/fence.h). take: -EBUSY (another daemon
 * holds it) with its pid and generation in err. check: -ESTALE when the lock is at a newer
 * generation than generation. own: records generation as ours, durably. */
int vmm_vm_fence_take(struct vmm_vm *vm, struct vmm_error *err);
void vmm_vm_fence_drop(struct vmm_vm *vm);
uint64_t vmm_vm_fence_generation(const struct vmm_vm *vm);
int vmm_vm_fence_check(struct vmm_vm *vm, uint64_t generation, struct vmm_error *err);
int vmm_vm_fence_own(struct vmm_vm *vm, uint64_t generation);
/* Listens for the guest's bridge. */
int vmm_vm_start_bridge(struct vmm_vm *vm);
/* Its record took a snapshot (encoded), then that was written (daemon/record.h): the execs the
 * snapshot holds get their pid answered. */
void vmm_vm_record_encoded(struct vmm_vm *vm);
void vmm_vm_record_written(struct vmm_vm *vm);
/* An exec of vm waits for its next record write (its pid is answered only then). */
bool vmm_vm_record_awaited(const struct vmm_vm *vm);
/* A recorded stop, before vmm_vm_free(): waiters hear that vsockmuxd stopped, execs without a pid
 * fail with message, and freeing it then reports no exit: the guest keeps its processes. */
void vmm_vm_stop(struct vmm_vm *vm, const char *message);
/* Ends a save in progress, fails the bridge's calls, then ends every process (lost: reason). */
struct vmm_vm *vmm_vm_free(struct vmm_vm *vm, const char *reason);

/* The manager's list of VMs, linked through the VM. */
void vmm_vm_link(struct vmm_vm *vm, struct list_head *list);
void vmm_vm_unlink(struct vmm_vm *vm);
struct vmm_vm *vmm_vm_list_next(const struct list_head *list, struct vmm_vm *prev);

const char *vmm_vm_name(const struct vmm_vm *vm);
const struct relay_transport *vmm_vm_transport(const struct vmm_vm *vm);
enum bridge_conn_state vmm_vm_bridge_state(const struct vmm_vm *vm);
struct bridge_host *vmm_vm_bridge(struct vmm_vm *vm);
unsigned vmm_vm_process_count(const struct vmm_vm *vm);
unsigned vmm_vm_container_count(const struct vmm_vm *vm);
bool vmm_vm_is_migrating(const struct vmm_vm *vm);
bool vmm_vm_is_saved(const struct vmm_vm *vm);
uint32_t vmm_vm_port_floor(const struct vmm_vm *vm);
void vmm_vm_get_counters(struct vmm_vm *vm, struct vmm_vm_counters *ret);
/* Stdio streams held (for max_streams): a count, not a walk. */
unsigned vmm_vm_streams_held(const struct vmm_vm *vm);
/* 0, or -EBADMSG when a count kept as the processes change (streams held, execs waiting for the
 * record) differs from the same counted by walking every process; for the tests. */
int vmm_vm_check_counts(const struct vmm_vm *vm);
/* Relay streams open now. */
unsigned vmm_vm_stream_count(const struct vmm_vm *vm);

/* Stopping: freezes every stream so what was read reaches its endpoint; returns how many are
 * pending: those streams, and one while the guest has reconnect probes to answer (at most
 * VMM_PROBE_WAIT_NS after the quiesce, vmm_vm_probes_wait()). */
unsigned vmm_vm_quiesce(struct vmm_vm *vm);
unsigned vmm_vm_quiesce_pending(const struct vmm_vm *vm);

/* ---- containers ---- */
int vmm_container_create(struct vmm_vm *vm, const char *id, const char *config_json, vmm_done_fn fn, void *userdata);
int vmm_container_shutdown(struct vmm_vm *vm, const char *id, bool force, vmm_done_fn fn, void *userdata);

/* ---- processes ---- */
/* Opens the endpoints, takes ports, listens, then sends ExecuteProcess (at once, or when the
 * guest's bridge connects, within the connect timeout). An error return (-errno, err says why)
 * means nothing was started and fn will not run: -EUSERS over max_processes or max_streams,
 * -EMSGSIZE for a request over the bridge frame limit. */
int vmm_exec(struct vmm_vm *vm, const struct vmm_exec_params *params, vmm_started_fn fn, void *userdata,
             struct vmm_error *err);
/* The same, handing back who waits for the start, for vmm_starter_cancel(). An exec_id the VM knows
 * already is -EEXIST (look it up first: vmm_process_find_id). */
int vmm_exec_start(struct vmm_vm *vm, const struct vmm_exec_params *params, vmm_started_fn fn, void *userdata,
                   struct vmm_starter **ret_starter, struct vmm_error *err);
struct vmm_process *vmm_process_find(struct vmm_vm *vm, uint32_t pid);
struct vmm_process *vmm_process_find_id(struct vmm_vm *vm, const char *exec_id);
/* Iteration in exec order; NULL ends it. */
struct vmm_process *vmm_process_next(struct vmm_vm *vm, struct vmm_process *prev);
/* Resizes the console of a terminal process (ResizeConsole). -ENOENT for an unknown pid, -ENOTTY
 * for a process without a terminal, -ESRCH for one whose exit is known, -EINVAL for a zero size. */
int vmm_resize(struct vmm_vm *vm, uint32_t pid, uint16_t height, uint16_t width, vmm_done_fn fn, void *userdata);
/* Ends a process's stdin once what was read from its endpoint reached the guest. -ENOENT for an
 * unknown pid, -ENOTCONN for a process without stdin, -EBUSY while its VM is being saved; 0 when
 * it ended already. */
int vmm_close_stdin(struct vmm_vm *vm, uint32_t pid);
/* Signals a process by pid. -ENOENT for a pid the VM does not know; one whose exit was reported,
 * or that the guest says is gone, completes with error 0 and the message "already gone". */
int vmm_kill(struct vmm_vm *vm, uint32_t pid, int signal, vmm_done_fn fn, void *userdata);

/* ---- for the handover room (daemon/save.c, daemon/restore.c; vm-state.c here) ---- */
struct relay *vmm_vm_relay(struct vmm_vm *vm);
void vmm_vm_emit(struct vmm_vm *vm, enum vmm_event_kind kind, const char *message);
/* New execs and container calls are refused, a bridge loss keeps every call. */
void vmm_vm_set_migrating(struct vmm_vm *vm, bool migrating);
/* Restored or resumed: waiting for the guest to come back. */
bool vmm_vm_is_reattaching(const struct vmm_vm *vm);
/* An exec has no pid yet: the destination could never find it. */
bool vmm_vm_exec_starting(const struct vmm_vm *vm);

/* Who holds a VM frozen (a save), told once every stream flushed, or that the VM is going away. */
struct vmm_vm_freeze_ops {
        void (*on_frozen)(struct vmm_vm *vm, void *userdata);
        void (*on_gone)(struct vmm_vm *vm, void *userdata);
};
/* Freezes every stream: nothing more is read from the guest; what was read is flushed. Sets
 * *ret_pending to the streams still flushing; ops->on_frozen runs when that reaches 0 (not when it
 * is 0 already). -EBUSY while another freeze holds the VM. */
int vmm_vm_freeze(struct vmm_vm *vm, const struct vmm_vm_freeze_ops *ops, void *userdata, unsigned *ret_pending);
bool vmm_vm_is_frozen(const struct vmm_vm *vm);
/* hcsshim's guest answers a reconnect probe (bridge_host_unanswered_probes()) on a 50 ms timer and
 * panics, stopping its VM, if its bridge connection is gone by then (docs/hcsshim-guest.md): whoever
 * lets go of the connection (a save, a stop, a removal) waits for those answers, at most
 * VMM_PROBE_WAIT_NS after since_ns, looking every VMM_PROBE_POLL_NS. Ours keeps an answer for its
 * next connection: nothing waits for it. true: wait on; poll (when given) is armed to look again. */
#define VMM_PROBE_WAIT_NS (500ull * 1000000ull)
#define VMM_PROBE_POLL_NS (2ull * 1000000ull)
bool vmm_vm_probes_wait(const struct vmm_vm *vm, uint64_t since_ns, struct relay_timer *poll);
/* Drops the hold and resumes the streams (a failed save). */
void vmm_vm_thaw(struct vmm_vm *vm);
/* Drops the hold and lets go of everything another daemon needs: the bridge port, every stdio port
 * and guest connection. The frozen streams keep their endpoints and counters for a resume. */
void vmm_vm_release(struct vmm_vm *vm);
void vmm_vm_observe_save(struct vmm_vm *vm, uint64_t ns);
/* Rolls back a release: listens again and waits for the guest to return. */
int vmm_vm_relisten(struct vmm_vm *vm, struct vmm_error *err);
/* The VM's saved state: its own fields, ports/'s floor, bridge/'s next id, its containers and its
 * process table. Strings stay the VM's; undo with vmm_vm_export_done() once encoded. */
int vmm_vm_export(struct vmm_vm *vm, Vsockmux__State__Vm *out);
void vmm_vm_export_done(Vsockmux__State__Vm *out);
/* The record's journal: the VM's own fields as vmm_vm_export() has them, without its processes,
 * and (export_pid) only the processes of pid, every entry of a reused one, oldest first, in an
 * otherwise empty out. Undo either with vmm_vm_export_done(). */
int vmm_vm_export_head(struct vmm_vm *vm, Vsockmux__State__Vm *out);
int vmm_vm_export_pid(struct vmm_vm *vm, uint32_t pid, Vsockmux__State__Vm *out);
/* Builds a new VM's content from sv: the floor, the processes and their endpoints (io_of, from
 * vmm_processes_check_io()), then its bridge, its containers and waits, listening on exactly the
 * saved ports; then waits for the guest (start_ns: when the restore began, for the metrics). */
int vmm_vm_import(struct vmm_vm *vm, const Vsockmux__State__Vm *sv, const struct vmm_restore_io *const *io_of,
                  uint64_t start_ns, struct vmm_error *err);

/* ---- a live upgrade (vm-handover.c): the VM goes to the new daemon with its connections ---- */

/* -EBUSY / -EOPNOTSUPP with why for a VM this build cannot hand over live now. */
int vmm_vm_check_hand_over(const struct vmm_vm *vm, struct vmm_error *err);
/* Holds the VM for a handover: its streams freeze (what was read reaches the endpoints), then its
 * bridge stops reading and writing; ops->on_frozen once all is quiet, ops->on_gone if the VM goes
 * or its bridge cannot be held after all (it serves on then once unheld). */
int vmm_vm_hold(struct vmm_vm *vm, const struct vmm_vm_freeze_ops *ops, void *userdata, struct vmm_error *err);
/* A rollback before vmm_vm_hand_over(): serves on exactly as before the hold. */
void vmm_vm_unhold(struct vmm_vm *vm);
/* After on_frozen: exports the VM as its save would, with its live bridge, streams and listeners
 * into fds (indices in out). Nothing is live here after it, even on an error; undo out with
 * vmm_vm_export_done(); freeing the VM then reports nothing. */
int vmm_vm_hand_over(struct vmm_vm *vm, Vsockmux__State__Vm *out, struct vmm_fds *fds, struct vmm_error *err);
bool vmm_vm_is_handed_over(const struct vmm_vm *vm);
/* A rolled-back upgrade: dst, built again from src's hand-over, takes src's waiting calls. */
void vmm_vm_take_waiters(struct vmm_vm *dst, struct vmm_vm *src);
/* The new daemon: a new VM takes over sv and its fds (each taken is set to -1 in fds). */
int vmm_vm_adopt(struct vmm_vm *vm, const Vsockmux__State__Vm *sv, int *fds, size_t n_fds, struct vmm_error *err);
