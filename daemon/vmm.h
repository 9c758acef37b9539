/* daemon/vmm.h: struct vmm owns every VM with its bridge, ports, processes, containers, streams and attach sockets; borrows the relay. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/host.h"
#include "daemon/opener.h"
#include "relay/relay.h"
#include "util/macro.h"

#define VMM_NAME_MAX 64u
#define VMM_DEFAULT_MAX_VMS 1024u
#define VMM_DEFAULT_MAX_PROCESSES 4096u     /* per VM, running and remembered */
#define VMM_DEFAULT_EXITED_KEEP 256u        /* exited processes remembered per VM for wait and ps */
#define VMM_DEFAULT_CONNECT_TIMEOUT_NS (30ull * 1000000000ull)
#define VMM_DEFAULT_DRAIN_TIMEOUT_NS (10ull * 1000000000ull)
/* A guest agent that redials (every 100 ms) or restarts within this keeps its processes' waits:
 * their exits are asked for again, not reported lost. */
#define VMM_DEFAULT_RECONNECT_GRACE_NS (30 * UINT64_C(1000000000))
/* Hard maxima for the configurable caps (vsockmuxd refuses larger values at start). */
#define VMM_MAX_VMS_LIMIT 65536u
#define VMM_MAX_PROCESSES_LIMIT (1u << 20)
#define VMM_MAX_STREAMS_LIMIT (1u << 22)
#define VMM_ATTACH_MAX_CLIENTS_LIMIT 4096u
#define VMM_MAX_ARGV 1024u
#define VMM_MAX_ENV 1024u

enum vmm_stream_kind {
        VMM_STDIN,
        VMM_STDOUT,
        VMM_STDERR,
        _VMM_STREAM_KIND_MAX,
};

enum vmm_process_state {
        VMM_PROCESS_PENDING,    /* waiting for the guest's bridge to connect */
        VMM_PROCESS_STARTING,   /* ExecuteProcess sent */
        VMM_PROCESS_RUNNING,
        VMM_PROCESS_EXITED,     /* exit known; the status is reported once the output drained */
        VMM_PROCESS_LOST,       /* exit status lost */
        _VMM_PROCESS_STATE_MAX,
};

enum vmm_exit_kind {
        VMM_EXIT_EXITED,
        VMM_EXIT_LOST,          /* never an exit code: the guest forgot the process, or the bridge died */
        VMM_EXIT_SIGNALED,      /* a signal killed it; hcsshim's guest says so (Go's -1) without naming it */
};

/* A signal vsockmuxd delivered through Kill names the signal of a SIGNALED exit that follows within this. */
#define VMM_SIGNAL_ATTRIBUTION_NS (10 * UINT64_C(1000000000))

struct vmm_exit {
        enum vmm_exit_kind kind;
        int code;               /* EXITED: the exit code; SIGNALED: the signal, 0 when nobody named it */
        char message[160];
};

enum vmm_event_kind {
        VMM_EVENT_VM_ADDED,
        VMM_EVENT_VM_REMOVED,
        VMM_EVENT_BRIDGE_CONNECTED,
        VMM_EVENT_BRIDGE_DISCONNECTED,
        VMM_EVENT_CONTAINER_CREATED,
        VMM_EVENT_CONTAINER_EXITED,
        VMM_EVENT_PROCESS_STARTED,
        VMM_EVENT_PROCESS_EXITED,
        VMM_EVENT_MIGRATION_STARTED,
        VMM_EVENT_MIGRATION_COMPLETED,
        VMM_EVENT_MIGRATION_FAILED,
};

struct vmm_event {
        enum vmm_event_kind kind;
        const char *vm;
        const char *container_id;       /* may be NULL */
        uint32_t pid;                   /* 0 when not about a process */
        const struct vmm_exit *exit;    /* PROCESS_EXITED */
        const char *message;            /* may be NULL */
};

typedef void (*vmm_event_fn)(const struct vmm_event *e, void *userdata);

struct vmm_config {
        const char *state_dir;          /* attach sockets live in <state_dir>/attach */
        const char *hvsock_root;        /* canonical; hybrid-vsock paths must lie inside (NULL: anywhere) */
        bool hvsock_in_state_dir;       /* with hvsock_root NULL: confine them to state_dir (vsockmuxd's default) */
        const char *exit_dir;           /* conmon's --exit-dir: <exec-id> files with the exit status; NULL: none */
        unsigned max_vms;
        unsigned max_processes;         /* per VM: at the cap an exec forgets the oldest reported exit first */
        unsigned max_streams;           /* daemon-wide stdio streams held or about to be; 0 = no cap */
        size_t bridge_max_frame;        /* each VM's bridge frames, both ways; 0 = BRIDGE_MAX_FRAME */
        unsigned exited_keep;
        uint64_t drain_timeout_ns;
        uint64_t reconnect_grace_ns;    /* see bridge_conn_set_reconnect_grace(); 0 = fail waits at once */
        size_t attach_backlog;
        size_t attach_client_max_tx;
        unsigned attach_max_clients;
        bool terminal;
        /* vsockmuxd --default-log: where an exec's output goes when it names no log and no
         * stdout/stderr endpoint. A directory: a k8s-file log <dir>/<exec-id>.log (opened with the
         * daemon's rights: the administrator chose it); journald; neither: kept for attach. */
        const char *default_log_dir;
        bool default_log_journald;
};

void vmm_config_default(struct vmm_config *c);

struct vmm;
struct vmm_vm;
struct vmm_process;
struct vmm_waiter;

int vmm_new(struct relay *r, const struct vmm_config *cfg, vmm_event_fn ev, void *userdata, struct vmm **ret);
/* Stopping: freezes every stream so what was read reaches its endpoint. Returns how many streams
 * are still flushing; run the loop until vmm_quiesce_pending() is 0 (or a deadline), then free. */
unsigned vmm_quiesce(struct vmm *m);
unsigned vmm_quiesce_pending(const struct vmm *m);

/* Removes every VM: their processes end as lost ("daemon stopping") and their waiters are told. */
struct vmm *vmm_free(struct vmm *m);
DEFINE_CLEANUP(struct vmm *, vmm_free);

struct relay *vmm_relay(struct vmm *m);

/* ---- VMs ---- */

/* -EEXIST for a taken name, -EINVAL for a bad name, -EUSERS over max_vms, -EPERM for an hvsock
 * path outside the configured root (or a symlink, or with "..": logged), -EBUSY when another daemon
 * holds the transport's lock (daemon/fence.h: logged with its pid), or relay_listen()'s errors. */
int vmm_vm_add(struct vmm *m, const char *name, const struct relay_transport *t, struct vmm_vm **ret);
int vmm_vm_remove(struct vmm *m, const char *name);
struct vmm_vm *vmm_vm_find(struct vmm *m, const char *name);
/* Iteration in insertion order; NULL ends it. */
struct vmm_vm *vmm_vm_next(struct vmm *m, struct vmm_vm *prev);
unsigned vmm_vm_count(const struct vmm *m);

const char *vmm_vm_name(const struct vmm_vm *vm);
const struct relay_transport *vmm_vm_transport(const struct vmm_vm *vm);
enum bridge_conn_state vmm_vm_bridge_state(const struct vmm_vm *vm);
struct bridge_host *vmm_vm_bridge(struct vmm_vm *vm);
unsigned vmm_vm_process_count(const struct vmm_vm *vm);
unsigned vmm_vm_container_count(const struct vmm_vm *vm);
bool vmm_vm_is_migrating(const struct vmm_vm *vm);

/* ---- Containers ---- */

typedef void (*vmm_done_fn)(int error, const char *message, void *userdata);
/* Creates the container and watches its exit notification. */
int vmm_container_create(struct vmm_vm *vm, const char *id, const char *config_json, vmm_done_fn fn, void *userdata);
int vmm_container_shutdown(struct vmm_vm *vm, const char *id, bool force, vmm_done_fn fn, void *userdata);

/* ---- Processes ---- */

struct vmm_exec_params {
        const char *container_id;       /* NULL or "": the VM itself */
        const char *const *argv;
        size_t n_argv;
        const char *const *env;
        size_t n_env;
        const char *cwd;
        /* Host endpoint paths; NULL or "": stdin absent, stdout/stderr kept for attach. */
        const char *stdin_path, *stdout_path, *stderr_path;
        uint64_t connect_timeout_ns;    /* 0 = default */
        /* Whose rights open the endpoints (the control peer's); NULL: the daemon's own. */
        const struct opener_creds *creds;
        /* The guest gives the process a console (EmulateConsole): no stderr stream, it merges
         * into stdout. Its first size; 0 x 0 leaves the guest's default. */
        bool terminal;
        uint16_t console_height, console_width;
        const char *exec_id;            /* NULL or "": the daemon makes one (see exec-id.h) */
        const char *log_k8s_path;       /* set: stdout and stderr as CRI log records there, no endpoints */
        /* No stdin_path: stdin is what attach clients write; stdin_once ends it when the last leaves. */
        bool interactive, stdin_once;
        /* The k8s-file log rotates before it would pass log_size_max bytes (0: never), keeping
         * log_max_files files, the current one included (0 or 1: conmon's truncation). */
        uint64_t log_size_max;
        unsigned log_max_files;
        bool log_journald;              /* stdout and stderr as journal entries, no endpoints */
        bool log_passthrough;           /* asked for "passthrough": the daemon's default log does not apply */
};

/* Runs once: the pid is known (error 0), or the exec failed. */
typedef void (*vmm_started_fn)(struct vmm_process *p, int error, const char *message, void *userdata);

/* Opens the endpoints, takes ports, listens, then sends ExecuteProcess (at once, or when the
 * guest's bridge connects, within the connect timeout). An error return (-errno with a one-line
 * reason in err) means nothing was started and fn will not run: -EUSERS over max_processes or
 * max_streams, -EMSGSIZE for a request over the bridge frame limit. */
int vmm_exec(struct vmm_vm *vm, const struct vmm_exec_params *params, vmm_started_fn fn, void *userdata, char *err,
             size_t errlen);
/* The same, handing back who waits for the start, for vmm_starter_cancel(). An exec_id the VM knows
 * already is -EEXIST (look it up first: vmm_process_find_id). */
struct vmm_starter;
int vmm_exec_start(struct vmm_vm *vm, const struct vmm_exec_params *params, vmm_started_fn fn, void *userdata,
                   struct vmm_starter **ret_starter, char *err, size_t errlen);
/* One more caller waiting for a known exec to start (an Exec repeating its id). Returns 1 when the
 * pid is known already (fn will not run), 0 when fn runs once it starts or fails. */
int vmm_process_when_started(struct vmm_process *p, vmm_started_fn fn, void *userdata,
                             struct vmm_starter **ret_starter);
/* The caller stops waiting (fn will not run). When nobody waits any more for an exec that has not
 * reached the guest yet, the exec is cancelled: it is never sent, so it never runs later. */
struct vmm_starter *vmm_starter_cancel(struct vmm_starter *s);

struct vmm_process *vmm_process_find(struct vmm_vm *vm, uint32_t pid);
struct vmm_process *vmm_process_find_id(struct vmm_vm *vm, const char *exec_id);
const char *vmm_process_exec_id(const struct vmm_process *p);
uint32_t vmm_process_pid(const struct vmm_process *p);      /* 0 until the guest named it */
/* Opens the k8s-file log's path again with creds' rights and writes there from now on (after an
 * external rotation); -ENOENT without such a log, or opener_open()'s error (the old file stays). */
int vmm_process_log_reopen(struct vmm_process *p, const struct opener_creds *creds);
/* Forgets an exited process whose exit was reported; -EBUSY while it runs or drains. */
int vmm_process_delete(struct vmm_process *p);
struct vmm_process *vmm_process_next(struct vmm_vm *vm, struct vmm_process *prev);

struct vmm_process_info {
        uint32_t pid;
        const char *exec_id;
        const char *container_id;
        const char *const *argv;
        size_t n_argv;
        enum vmm_process_state state;
        uint32_t ports[_VMM_STREAM_KIND_MAX];
        uint64_t bytes[_VMM_STREAM_KIND_MAX];   /* delivered to the endpoint (stdin: to the guest) */
        int stream_error[_VMM_STREAM_KIND_MAX]; /* -errno the stream ended with, 0 = none (yet) */
        uint64_t dropped[_VMM_STREAM_KIND_MAX]; /* read and never delivered because the stream failed */
        uint64_t wait_call_id;                  /* outstanding WaitForProcess; 0 = none */
        bool exit_known;
        struct vmm_exit exit;
        const char *attach_path;                /* NULL until vmm_process_attach_listen() opened it */
        unsigned attach_clients;                /* connected to the attach socket now */
        unsigned attach_max_clients;
        bool output_lost_on_move;               /* the guest will not redial its stdout/stderr after a save */
        bool terminal;
        bool attach_stdin;                      /* attach clients feed its stdin (exec -i), still open */
};
void vmm_process_get_info(const struct vmm_process *p, struct vmm_process_info *ret);
/* Opens the process's attach socket (conmon format) on first use; 0 when it is open. -ENOENT
 * when the process has no attach state. */
int vmm_process_attach_listen(struct vmm_process *p);

/* Called once the exit is reported: after the wait completed AND every output stream reached EOF
 * and was flushed to its endpoint (or the drain timeout passed), never the other way round. */
typedef void (*vmm_exit_fn)(struct vmm_process *p, const struct vmm_exit *exit, void *userdata);
/* Returns 1 with *ret_exit filled when the exit was reported already (fn will not run); 0 when fn
 * will run later (cancel it with vmm_waiter_free). */
int vmm_process_wait(struct vmm_process *p, vmm_exit_fn fn, void *userdata, struct vmm_waiter **ret_waiter,
                     struct vmm_exit *ret_exit);
struct vmm_waiter *vmm_waiter_free(struct vmm_waiter *w);

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

/* ---- Daemon-wide numbers ---- */
enum vmm_cap {
        VMM_CAP_VMS,            /* --max-vms refused a vm add */
        VMM_CAP_PROCESSES,      /* --max-processes refused an exec */
        VMM_CAP_STREAMS,        /* --max-streams refused an exec */
        _VMM_CAP_MAX,
};
struct vmm_stats {
        unsigned vms, processes, streams;
        uint64_t cap_hits[_VMM_CAP_MAX];
};
void vmm_get_stats(struct vmm *m, struct vmm_stats *ret);
const char *vmm_cap_to_string(enum vmm_cap c);

/* ---- Per-VM numbers (the metrics) ---- */
/* Upper bounds, in milliseconds, of the save and restore duration histograms' buckets (+Inf
 * follows the last). */
#define VMM_DURATION_BUCKETS_MS 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
#define VMM_DURATION_N_BUCKETS 11
struct vmm_duration_hist {
        uint64_t bucket[VMM_DURATION_N_BUCKETS + 1];    /* non-cumulative; the last is +Inf */
        uint64_t count;
        uint64_t sum_ns;
};
extern const uint64_t vmm_duration_bucket_ms[VMM_DURATION_N_BUCKETS];

struct vmm_vm_counters {
        unsigned processes;
        unsigned streams;                       /* relay streams open now */
        uint64_t bytes[_VMM_STREAM_KIND_MAX];   /* delivered, since the VM was added (stdin: to the guest) */
        uint64_t stream_errors;                 /* streams that ended with an error (endpoint or guest side) */
        uint64_t dropped_bytes;                 /* read by a stream that then failed, never delivered */
        uint64_t bridge_connects;               /* the guest's bridge negotiated; the first one too */
        uint64_t held_replies;                  /* replies held now for calls not registered yet */
        uint64_t held_dropped;                  /* held replies refused at the cap */
        struct vmm_duration_hist save;          /* save start to the blob handed out */
        struct vmm_duration_hist restore;       /* restore start to the guest back on its bridge */
};
void vmm_vm_get_counters(struct vmm_vm *vm, struct vmm_vm_counters *ret);

const char *vmm_process_state_to_string(enum vmm_process_state s);
const char *vmm_exit_kind_to_string(enum vmm_exit_kind k);

/* ---- Save, restore, resume (the VM's in-flight relay state, handed between daemons) ---- */

/* The blob is daemon/savestate's format. Runs once: error 0 with the blob (valid during the call). */
typedef void (*vmm_save_fn)(int error, const char *message, const uint8_t *blob, size_t len, unsigned n_processes,
                            void *userdata);

/* Marks the VM migrating (new execs are refused), freezes its streams (nothing more is read from
 * the guest; what was read is flushed to the endpoints), records the counts, then releases the
 * VM's listeners and guest connections so another daemon can take them. The VM stays here, saved,
 * until it is removed or resumed. An error return means nothing changed and fn will not run. */
int vmm_save(struct vmm_vm *vm, vmm_save_fn fn, void *userdata, char *err, size_t errlen);

/* Rolls back a save that was not restored elsewhere: listens again, re-adopts the still
 * outstanding waits and resumes every stream where it stopped. */
int vmm_resume(struct vmm_vm *vm, char *err, size_t errlen);

/* Host endpoints for one restored process; NULL or "" keeps that output for attach. An entry
 * with pid 0 names no endpoints: its creds open what the others do not name (a saved k8s-file
 * log), so nothing from a blob is ever opened with the daemon's own rights for a client. */
struct vmm_restore_io {
        uint32_t pid;
        const char *path[_VMM_STREAM_KIND_MAX];
        const struct opener_creds *creds;       /* as in vmm_exec_params */
};

/* Builds a VM from a saved blob: checks it and the endpoints against the saved ports before
 * anything listens (V3), raises the port floor, seeds the call ids, re-listens on exactly the
 * saved ports, pre-registers each outstanding wait and accepts the guest's return. name and t
 * override the saved ones when non-NULL. */
int vmm_restore(struct vmm *m, const uint8_t *blob, size_t len, const char *name, const struct relay_transport *t,
                const struct vmm_restore_io *io, size_t n_io, struct vmm_vm **ret, char *err, size_t errlen);

bool vmm_vm_is_saved(const struct vmm_vm *vm);
