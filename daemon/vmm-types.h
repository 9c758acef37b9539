/* daemon/vmm-types.h: the value types the model rooms (manager, handover, vm, container, process) share: limits, states, exits, events, configuration, counters; owns no state. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "bridge/host.h"
#include "daemon/error.h"
#include "daemon/opener.h"
#include "relay/relay.h"
#include "util/macro.h"

#define VMM_NAME_MAX 64u
#define VMM_DEFAULT_MAX_VMS 1024u
#define VMM_DEFAULT_MAX_PROCESSES 4096u /* per VM, running and remembered */
#define VMM_DEFAULT_EXITED_KEEP 256u    /* exited processes remembered per VM for wait and ps */
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
        VMM_PROCESS_PENDING,  /* waiting for the guest's bridge to connect */
        VMM_PROCESS_STARTING, /* ExecuteProcess sent */
        VMM_PROCESS_RUNNING,
        VMM_PROCESS_EXITED, /* exit known; the status is reported once the output drained */
        VMM_PROCESS_LOST,   /* exit status lost */
        _VMM_PROCESS_STATE_MAX,
};

enum vmm_exit_kind {
        VMM_EXIT_EXITED,
        VMM_EXIT_LOST,     /* never an exit code: the guest forgot the process, or the bridge died */
        VMM_EXIT_SIGNALED, /* a signal killed it; hcsshim's guest says so (Go's -1) without naming it */
};

/* A signal vsockmuxd delivered through Kill names the signal of a SIGNALED exit that follows within this. */
#define VMM_SIGNAL_ATTRIBUTION_NS (10 * UINT64_C(1000000000))

struct vmm_exit {
        enum vmm_exit_kind kind;
        int code; /* EXITED: the exit code; SIGNALED: the signal, 0 when nobody named it */
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
        const char *container_id;    /* may be NULL */
        uint32_t pid;                /* 0 when not about a process */
        const struct vmm_exit *exit; /* PROCESS_EXITED */
        const char *message;         /* may be NULL */
};

typedef void (*vmm_event_fn)(const struct vmm_event *e, void *userdata);

struct vmm_config {
        const char *state_dir;    /* attach sockets live in <state_dir>/attach */
        const char *hvsock_root;  /* canonical; hybrid-vsock paths must lie inside (NULL: anywhere) */
        bool hvsock_in_state_dir; /* with hvsock_root NULL: confine them to state_dir (vsockmuxd's default) */
        const char *exit_dir;     /* conmon's --exit-dir: <exec-id> files with the exit status; NULL: none */
        unsigned max_vms;
        unsigned max_processes;   /* per VM: at the cap an exec forgets the oldest reported exit first */
        unsigned max_streams;     /* daemon-wide stdio streams held or about to be; 0 = no cap */
        unsigned stream_capacity; /* what the open-file limit lets the relay hold (0: unknown), for the refusal */
        size_t bridge_max_frame;  /* each VM's bridge frames, both ways; 0 = BRIDGE_MAX_FRAME */
        unsigned exited_keep;
        uint64_t drain_timeout_ns;
        uint64_t reconnect_grace_ns; /* see bridge_conn_set_reconnect_grace(); 0 = fail waits at once */
        size_t attach_backlog;
        size_t attach_client_max_tx;
        unsigned attach_max_clients;
        bool terminal;
        /* vsockmuxd --default-log: where an exec's output goes when it names no log and no
         * stdout/stderr endpoint. A directory: a k8s-file log <dir>/<exec-id>.log (opened with the
         * daemon's rights: the administrator chose it); journald; neither: kept for attach. */
        const char *default_log_dir;
        bool default_log_journald;
        /* Keep a record of every VM in <state_dir>/vms (daemon/record.h) for a restart or a crash
         * to recover from; vsockmuxd's default, --no-record turns it off. */
        bool record;
        /* How long a record write may wait while a VM's changes keep coming and no exec waits for
         * it (daemon/record.h); 0: every change is written in the next loop pass. */
        uint64_t record_burst_gap_ns;
};

struct vmm;
struct vmm_vm;
struct vmm_process;
struct vmm_waiter;
struct vmm_starter;

typedef void (*vmm_done_fn)(int error, const char *message, void *userdata);

struct vmm_exec_params {
        const char *container_id; /* NULL or "": the VM itself */
        const char *const *argv;
        size_t n_argv;
        const char *const *env;
        size_t n_env;
        const char *cwd;
        /* Host endpoint paths; NULL or "": stdin absent, stdout kept for attach, stderr kept for
         * attach when something else is (vmm_exec_wants_stderr()). */
        const char *stdin_path, *stdout_path, *stderr_path;
        uint64_t connect_timeout_ns; /* 0 = default */
        /* Whose rights open the endpoints (the control peer's); NULL: the daemon's own. */
        const struct opener_creds *creds;
        /* The guest gives the process a console (EmulateConsole): no stderr stream, it merges
         * into stdout. Its first size; 0 x 0 leaves the guest's default. */
        bool terminal;
        uint16_t console_height, console_width;
        const char *exec_id;      /* NULL or "": the daemon makes one (see exec-id.h) */
        const char *log_k8s_path; /* set: stdout and stderr as CRI log records there, no endpoints */
        /* No stdin_path: stdin is what attach clients write; stdin_once ends it when the last leaves. */
        bool interactive, stdin_once;
        /* The k8s-file log rotates before it would pass log_size_max bytes (0: never), keeping
         * log_max_files files, the current one included (0 or 1: conmon's truncation). */
        uint64_t log_size_max;
        unsigned log_max_files;
        bool log_journald;    /* stdout and stderr as journal entries, no endpoints */
        bool log_passthrough; /* asked for "passthrough": the daemon's default log does not apply */
        /* No stderr_path while stdout has one: stderr is still kept for attach (else the process
         * gets none, see vmm_exec_wants_stderr()). */
        bool keep_stderr;
};

/* Runs once: the pid is known (error 0), or the exec failed. */
typedef void (*vmm_started_fn)(struct vmm_process *p, int error, const char *message, void *userdata);

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
        const char *attach_path; /* NULL until vmm_process_attach_listen() opened it */
        unsigned attach_clients; /* connected to the attach socket now */
        unsigned attach_max_clients;
        bool output_lost_on_move; /* the guest will not redial its stdout/stderr after a save */
        bool terminal;
        bool attach_stdin;              /* attach clients feed its stdin (exec -i), still open */
        uint64_t started_ns, exited_ns; /* CLOCK_REALTIME; 0: not (yet) known */
};
/* Called once the exit is reported: after the wait completed AND every output stream reached EOF
 * and was flushed to its endpoint (or the drain timeout passed), never the other way round. */
/* exit NULL: vsockmuxd stopped (a recorded stop); the process goes on and a restart recovers it.
 * What its waiters are answered (UNAVAILABLE); cli/cli.h's CLI_DAEMON_STOPPED matches its start. */
#define VMM_STOPPED_MESSAGE "vsockmuxd stopped; its processes go on and a restart recovers them"
/* An exec still without a pid at a recorded stop: nothing can find it again. */
#define VMM_STOPPED_EXEC_MESSAGE "vsockmuxd stopped before the guest gave the exec's pid; its exit will not be known"

typedef void (*vmm_exit_fn)(struct vmm_process *p, const struct vmm_exit *exit, void *userdata);

/* ---- Daemon-wide numbers ---- */
enum vmm_cap {
        VMM_CAP_VMS,       /* --max-vms refused a vm add */
        VMM_CAP_PROCESSES, /* --max-processes refused an exec */
        VMM_CAP_STREAMS,   /* --max-streams refused an exec */
        _VMM_CAP_MAX,
};
struct vmm_stats {
        unsigned vms, processes, streams;
        uint64_t cap_hits[_VMM_CAP_MAX];
};
/* ---- Per-VM numbers (the metrics) ---- */
/* Upper bounds, in milliseconds, of the save and restore duration histograms' buckets (+Inf
 * follows the last). */
#define VMM_DURATION_BUCKETS_MS 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
#define VMM_DURATION_N_BUCKETS 11
struct vmm_duration_hist {
        uint64_t bucket[VMM_DURATION_N_BUCKETS + 1]; /* non-cumulative; the last is +Inf */
        uint64_t count;
        uint64_t sum_ns;
};
extern const uint64_t vmm_duration_bucket_ms[VMM_DURATION_N_BUCKETS];

struct vmm_vm_counters {
        unsigned processes;
        unsigned streams;                     /* relay streams open now */
        uint64_t bytes[_VMM_STREAM_KIND_MAX]; /* delivered, since the VM was added (stdin: to the guest) */
        uint64_t stream_errors;               /* streams that ended with an error (endpoint or guest side) */
        uint64_t dropped_bytes;               /* read by a stream that then failed, never delivered */
        uint64_t bridge_connects;             /* the guest's bridge negotiated; the first one too */
        uint64_t held_replies;                /* replies held now for calls not registered yet */
        uint64_t held_dropped;                /* held replies refused at the cap */
        struct vmm_duration_hist save;        /* save start to the blob handed out */
        struct vmm_duration_hist restore;     /* restore start to the guest back on its bridge */
};
/* One duration into a histogram (daemon/vmm-counters.c). */
void vmm_duration_observe(struct vmm_duration_hist *h, uint64_t ns);
const char *vmm_cap_to_string(enum vmm_cap c);

/* The blob is daemon/savestate's format. Runs once: error 0 with the blob (valid during the call). */
typedef void (*vmm_save_fn)(int error, const char *message, const uint8_t *blob, size_t len, unsigned n_processes,
                            void *userdata);

/* Host endpoints for one restored process; NULL or "" keeps that output for attach. An entry
 * with pid 0 names no endpoints: its creds open what the others do not name (a saved k8s-file
 * log), so nothing from a blob is ever opened with the daemon's own rights for a client. */
struct vmm_restore_io {
        uint32_t pid;
        /* Non-NULL: names the process by its exec id instead (the record's): a pid the guest reused
         * names two. By pid alone: its newest entry. */
        const char *exec_id;
        const char *path[_VMM_STREAM_KIND_MAX];
        const struct opener_creds *creds; /* as in vmm_exec_params */
        /* The record's own endpoints after a restart (daemon/record.h): a regular file goes on at
         * its length, so what reached it before a crash is exactly what the guest is told. */
        bool recovered;
};

/* A live upgrade's fds, sent along with its Handover; the state's *_fd fields index them. */
struct vmm_fds {
        int *fds;
        size_t n, cap;
};
/* Takes fd (closed on failure too); *ret_index is its index. */
static inline int vmm_fds_add(struct vmm_fds *f, int fd, int32_t *ret_index)
{
        if (f->n == f->cap) {
                size_t cap = f->cap ? f->cap * 2 : 16;
                int *p = realloc(f->fds, cap * sizeof(*p));

                if (!p) {
                        safe_close(fd);
                        return -ENOMEM;
                }
                f->fds = p;
                f->cap = cap;
        }
        f->fds[f->n] = fd;
        *ret_index = (int32_t)f->n++;
        return 0;
}
/* The fd at index i, taken out of fds (set to -1 there), or -1 for none or a bad index. */
static inline int vmm_fds_take(int *fds, size_t n_fds, int32_t i)
{
        int fd;

        if (i < 0 || (size_t)i >= n_fds)
                return -1;
        fd = fds[i];
        fds[i] = -1;
        return fd;
}
