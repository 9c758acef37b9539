/* daemon/process.h: the process room: struct vmm_processes, a VM's table of execs, and struct vmm_process, one exec with its streams, waiters, starters and exit report; borrows the VM's struct vmm_guest. */
#pragma once

#include "daemon/guest.h"
#include "daemon/vmm-types.h"
#include "state.pb-c.h"

struct vmm_processes;

/* Upward notifications to the VM that owns the table. */
struct vmm_processes_ops {
        /* A stream that a freeze (vmm_processes_freeze) stopped has flushed what it read. */
        void (*on_stream_frozen)(void *userdata);
        /* The process pid changed as the record keeps it (it started, exited, was forgotten:
         * gone_exec_id, its exec id, as a pid the guest reused may name another entry still).
         * now: write it before returning; else once per loop turn. true: a record is kept and
         * vmm_processes_durable() follows each write (an exec's pid is answered only then). */
        bool (*on_changed)(uint32_t pid, const char *gone_exec_id, bool now, void *userdata);
};

int vmm_processes_new(const struct vmm_guest *guest, const struct vmm_processes_ops *ops, void *userdata,
                      struct vmm_processes **ret);
/* Every process ends: an exec still starting fails, an unreported exit is reported as lost
 * (reason), waiters are told. Free the bridge first: its failed calls see live processes. */
struct vmm_processes *vmm_processes_free(struct vmm_processes *t, const char *reason);

/* ---- the table ---- */
unsigned vmm_processes_count(const struct vmm_processes *t);
struct vmm_process *vmm_processes_find(struct vmm_processes *t, uint32_t pid);
struct vmm_process *vmm_processes_find_id(struct vmm_processes *t, const char *exec_id);
struct vmm_process *vmm_processes_next(struct vmm_processes *t, struct vmm_process *prev);
/* Checks an exec request (exec id, argv, console) before any cap is counted; -EBUSY while migrating. */
int vmm_processes_exec_check(struct vmm_processes *t, const struct vmm_exec_params *params, struct vmm_error *err);
/* Forgets the oldest reported exit when the table holds max processes or more; true when under max then. */
bool vmm_processes_make_room(struct vmm_processes *t, unsigned max);
/* Whether the process gets a stderr stream (a port the guest dials): one with an endpoint, a log, or
 * an exec that keeps its stdout or stdin for attach clients (or asks with keep_stderr); not a
 * terminal's. Else nobody could ever read it, and its listener would be the largest part of an
 * idle process's cost. */
bool vmm_exec_wants_stderr(const struct vmm_exec_params *params);
/* The stdio streams such an exec holds, for max_streams. */
unsigned vmm_exec_streams(const struct vmm_exec_params *params);
/* See vmm_exec_start() in daemon/vm.h; the caps are the caller's. */
int vmm_processes_exec(struct vmm_processes *t, const struct vmm_exec_params *params, vmm_started_fn fn, void *userdata,
                       struct vmm_starter **ret_starter, struct vmm_error *err);
/* The guest's bridge connected: send the queued execs. */
void vmm_processes_bridge_connected(struct vmm_processes *t);
int vmm_processes_kill(struct vmm_processes *t, uint32_t pid, int signal, vmm_done_fn fn, void *userdata);
/* held: a save holds the streams frozen, so an open stdin is -EBUSY rather than thawed. */
int vmm_processes_close_stdin(struct vmm_processes *t, uint32_t pid, bool held);
int vmm_processes_resize(struct vmm_processes *t, uint32_t pid, uint16_t height, uint16_t width, vmm_done_fn fn,
                         void *userdata);

/* ---- numbers ---- */
/* Stdio streams held (listeners, relay streams, a pending exec's), for max_streams: kept as they
 * change (process_held_sync), so asking costs nothing. */
unsigned vmm_processes_streams_held(const struct vmm_processes *t);
/* The kept counts against the same counted by walking every process: 0, or -EBADMSG. */
int vmm_processes_check_counts(const struct vmm_processes *t);
/* Relay streams open now. */
unsigned vmm_processes_streams_open(const struct vmm_processes *t);
/* Adds the table's numbers to c: processes, open streams, bytes (forgotten processes' too),
 * stream errors, dropped bytes. */
void vmm_processes_add_counters(const struct vmm_processes *t, struct vmm_vm_counters *c);

/* The record took a snapshot of the table (encoded), then that snapshot was written (durable):
 * the execs it holds get their pid answered; those that started in between wait for the next. */
void vmm_processes_encoded(struct vmm_processes *t);
/* An exec waits for the next record write to hear its pid. */
bool vmm_processes_awaiting_record(const struct vmm_processes *t);
void vmm_processes_durable(struct vmm_processes *t);
/* A recorded stop (SIGTERM): the processes go on in the guest and a restart recovers them from
 * the record. Every waiter hears so (vmm_exit_fn with exit NULL), an exec still without a pid
 * fails with message; from here on nothing is reported, and freeing the table tells nobody. */
void vmm_processes_stop(struct vmm_processes *t, const char *message);

/* ---- freeze, release, resume (for the VM's save, resume and stop) ---- */
/* Freezes every stream: nothing more is read from the guest, what was read is flushed. Returns how
 * many were frozen now; each tells ops->on_stream_frozen once flushed. */
unsigned vmm_processes_freeze(struct vmm_processes *t);
/* Resumes every frozen stream and reports exits that were waiting for them. */
void vmm_processes_thaw(struct vmm_processes *t);
/* An exec without a pid yet: the destination could never find it again. */
bool vmm_processes_starting(const struct vmm_processes *t);
/* Lets go of every stdio port and guest connection; the frozen streams keep their endpoints. */
void vmm_processes_release(struct vmm_processes *t);
/* Listens again on every unfinished stream's port (resume); failures are logged. */
void vmm_processes_relisten(struct vmm_processes *t);
/* Reports the exits that need nothing more (restored processes that had finished). */
void vmm_processes_report_ready(struct vmm_processes *t);

/* ---- saved state (daemon/process-state.c) ---- */
/* Fills out->processes (and n_processes) from the table; the strings stay the processes'. Undo with
 * vmm_processes_export_done() once encoded. */
int vmm_processes_export(struct vmm_processes *t, Vsockmux__State__Vm *out);
void vmm_processes_export_done(Vsockmux__State__Vm *out);
/* Every entry of pid (a pid the guest reused has several), oldest first, into out->processes as
 * vmm_processes_export() has them (the record's journal); none: n_processes 0. Undo with
 * vmm_processes_export_done(). */
int vmm_processes_export_pid(struct vmm_processes *t, uint32_t pid, Vsockmux__State__Vm *out);
/* V3: endpoints that do not match the saved ports are refused before anything listens. Then
 * *ret_io_of: each saved process's entry, in sv's order (NULL: none names it and there are no
 * rights for the rest), for vmm_processes_import(); the caller frees the array. */
int vmm_processes_check_io(const Vsockmux__State__Vm *sv, const struct vmm_restore_io *io, size_t n_io,
                           const struct vmm_restore_io ***ret_io_of, struct vmm_error *err);
/* Rebuilds the saved processes, their endpoints and port reservations; nothing listens yet. io_of
 * as vmm_processes_check_io() matched it, or NULL: no entries. */
int vmm_processes_import(struct vmm_processes *t, const Vsockmux__State__Vm *sv,
                         const struct vmm_restore_io *const *io_of, struct vmm_error *err);
/* Pre-registers the outstanding waits and listens on every unfinished stream (the bridge exists). */
int vmm_processes_adopt(struct vmm_processes *t, const Vsockmux__State__Vm *sv, struct vmm_error *err);

/* ---- one process ---- */
/* One more caller waiting for a known exec to start (an Exec repeating its id). Returns 1 when the
 * pid is known already (fn will not run), 0 when fn runs once it starts or fails. */
int vmm_process_when_started(struct vmm_process *p, vmm_started_fn fn, void *userdata,
                             struct vmm_starter **ret_starter);
/* The caller stops waiting (fn will not run). When nobody waits any more for an exec that has not
 * reached the guest yet, the exec is cancelled: it is never sent, so it never runs later. */
struct vmm_starter *vmm_starter_cancel(struct vmm_starter *s);
struct vmm_process *vmm_starter_process(const struct vmm_starter *s);

const char *vmm_process_exec_id(const struct vmm_process *p);
uint32_t vmm_process_pid(const struct vmm_process *p); /* 0 until the guest named it */
/* Opens the k8s-file log's path again with creds' rights and writes there from now on (after an
 * external rotation); -ENOENT without such a log, or opener_open()'s error (the old file stays). */
int vmm_process_log_reopen(struct vmm_process *p, const struct opener_creds *creds);
/* Forgets an exited process whose exit was reported; -EBUSY while it runs or drains. */
int vmm_process_delete(struct vmm_process *p);
void vmm_process_get_info(const struct vmm_process *p, struct vmm_process_info *ret);
/* Opens the process's attach socket (conmon format) on first use; 0 when it is open. -ENOENT
 * when the process has no attach state. */
int vmm_process_attach_listen(struct vmm_process *p);

/* Returns 1 with *ret_exit filled when the exit was reported already (fn will not run); 0 when fn
 * will run later (cancel it with vmm_waiter_free). */
int vmm_process_wait(struct vmm_process *p, vmm_exit_fn fn, void *userdata, struct vmm_waiter **ret_waiter,
                     struct vmm_exit *ret_exit);
struct vmm_waiter *vmm_waiter_free(struct vmm_waiter *w);

const char *vmm_process_state_to_string(enum vmm_process_state s);
const char *vmm_exit_kind_to_string(enum vmm_exit_kind k);

/* ---- a live upgrade (process-handover.c): the table goes to the new daemon as it is ---- */

/* Whether every process can be handed over live: -EBUSY with why for one this build cannot move
 * (an exec starting, an attach socket or client, an attach backlog or stdin, a k8s-file or
 * journald log). */
int vmm_processes_check_hand_over(const struct vmm_processes *t, struct vmm_error *err);
/* After vmm_processes_export(t, out) with every stream frozen: each stream's guest connection,
 * endpoint and listener go into fds, their indices into out's streams (-1: none). The table holds
 * nothing live after, and vmm_processes_free() then reports nothing (no exit, no exit file). */
int vmm_processes_hand_over(struct vmm_processes *t, Vsockmux__State__Vm *out, struct vmm_fds *fds);
/* A rolled-back upgrade: dst, built again from src's hand-over, takes src's waiters (the calls
 * still waiting for an exit), process by pid; those whose exit dst knows already hear it now. */
void vmm_processes_take_waiters(struct vmm_processes *dst, struct vmm_processes *src);
/* The new daemon, after vmm_processes_import(t, sv, NULL, 0, ...): takes each stream's fds out of
 * fds and goes on where the old daemon stopped: the waits adopted (their requests went out on the
 * same bridge connection), the streams relaying, the listeners accepting. */
int vmm_processes_adopt_live(struct vmm_processes *t, const Vsockmux__State__Vm *sv, int *fds, size_t n_fds,
                             struct vmm_error *err);
