/* daemon/vmm-internal.h: the structures behind daemon/vmm.h, shared by vmm.c, process.c and the save/restore files; owns nothing itself. */
#pragma once

#include "daemon/attach.h"
#include "daemon/log-k8s.h"
#include "daemon/vmm.h"
#include "ports/ports.h"
#include "util/list.h"

/* What a removed VM's transport had handed out: a guest that outlived the VM may still redial
 * those ports, so a VM added again on the same transport starts above them. Bounded: the oldest
 * entry makes room. */
#define VMM_PORT_FLOORS_MAX 4096u

struct vmm_port_floor {
        struct relay_transport transport;
        uint32_t floor;
        uint64_t seq;                   /* when last raised: the smallest goes first when full */
};

struct vmm {
        struct relay *relay;
        struct vmm_config cfg;
        char *attach_dir;
        int exit_dir_fd;                /* -1: no exit files */
        vmm_event_fn event_fn;
        void *event_userdata;
        struct list_head vms;
        unsigned n_vms;
        unsigned quiesce_pending;       /* streams still flushing for a stop */
        struct vmm_port_floor *floors;  /* one per transport a removed VM used */
        unsigned n_floors;
        uint64_t floor_seq;
        char *state_dir_real;           /* the hvsock root when confined to the state directory */
        struct opener *opener;          /* opens endpoints as the control client, off the loop thread */
        uint64_t cap_hits[_VMM_CAP_MAX];
};

struct vmm_container {
        struct list_head link;
        struct vmm_vm *vm;
        char *id;
        bool watched;
};

struct fence;

struct vmm_vm {
        struct list_head link;
        struct vmm *vmm;
        char *name;
        struct relay_transport transport;       /* as the client named it: shown, saved, compared */
        /* What relay/ binds, unlinks and connects by: HVSOCK paths go through hvsock_dir_fd
         * (/proc/self/fd/N/name), the VM's directory opened once at add. */
        struct relay_transport listen_transport;
        int hvsock_dir_fd;
        struct ports *ports;
        struct bridge_host *bridge;
        struct list_head processes;
        unsigned n_processes;
        unsigned n_exited;
        struct list_head containers;
        unsigned n_containers;
        unsigned exec_seq;              /* names attach sockets before the pid is known */
        bool stdio_resume;              /* V4 agreed: every stdio connection starts with the byte count */
        bool removing;
        bool saved;                     /* state handed out: no listeners or guest connections here */
        bool reattaching;               /* restored or resumed: waiting for the guest to come back */
        struct vmm_save_op *save;       /* a save in progress */
        struct relay_timer *window_timer; /* closes the resume window some time after the guest returned */
        struct vmm_vm_counters counters;  /* the cumulative ones; gauges are computed when asked */
        uint64_t restore_start_ns;        /* restored, guest not back yet: when the restore began */
        struct fence *fence;              /* our hold on the transport's lock (daemon/vm-fence.c) */
        uint64_t generation;              /* of the state we serve; a saved state carries it */
};

struct vmm_stream {
        struct vmm_process *process;
        enum vmm_stream_kind kind;
        uint32_t port;                  /* 0 = the process has no such stream */
        int endpoint_fd;                /* until the guest connects and the stream takes it */
        char *endpoint;                 /* the path the client named; NULL = kept for attach */
        struct relay_listener *listener;
        struct relay_stream *stream;
        struct relay_stream_counters counters;  /* the last known, kept after the stream is gone */
        bool done;
        int error;
        bool no_redial;                 /* restored without the resume extension, not a container's init:
                                         * hcsshim's guest will not dial it again */
        bool close_requested;           /* stdin: CloseStdin; released once what was read is flushed */
        uint64_t dropped;               /* read, never delivered: the stream failed */
};

struct vmm_starter {
        struct list_head link;
        struct vmm_process *process;
        vmm_started_fn fn;
        void *userdata;
};

struct vmm_waiter {
        struct list_head link;
        struct vmm_process *process;
        vmm_exit_fn fn;
        void *userdata;
};

struct vmm_process {
        struct list_head link;
        struct vmm_vm *vm;
        uint32_t pid;
        char *exec_id;
        int log_fd;                     /* k8s-file log, -1: none */
        char *log_path;                 /* for ReopenLog */
        uint64_t log_size, log_size_max; /* the current log file's bytes; its cap (0: none) */
        unsigned log_max_files;         /* kept at rotation, the current one included */
        struct opener_creds log_creds;  /* whose rights rotate it (the exec's caller), with log_groups */
        gid_t *log_groups;
        bool log_has_creds;
        bool log_journald;              /* its output goes to the journal (log-journald.h) */
        bool log_journald_failed;       /* said once: journald refused an entry */
        char *container_id;
        char **argv;
        size_t n_argv;
        char **env;
        size_t n_env;
        char *cwd;
        enum vmm_process_state state;
        struct vmm_stream streams[_VMM_STREAM_KIND_MAX];
        uint64_t wait_call_id;
        bool wait_outstanding;
        bool exit_known;
        bool exit_reported;
        struct vmm_exit exit;
        struct list_head waiters;
        struct attach *attach;
        struct relay_timer *timer;      /* connect timeout while pending, drain timeout after exit */
        struct list_head starters;      /* struct vmm_starter: told once the pid is known or the exec failed */
        bool in_exec;                   /* ExecuteProcess outstanding: its callback holds a pointer */
        bool container_init;            /* the first process exec'd in its container (hcsshim redials its stdio) */
        int killed_by;                  /* the last signal Kill delivered (guest said OK); 0 = none */
        uint64_t killed_at_ns;          /* when, on the relay's clock */
        bool terminal;                  /* EmulateConsole: no stderr stream */
        uint16_t console_height, console_width;
};

/* process.c, for vmm.c and the save/restore files */
void vmm_process_bridge_connected(struct vmm_vm *vm);
void vmm_process_vm_teardown(struct vmm_vm *vm, const char *reason);
int vmm_process_new(struct vmm_vm *vm, const struct vmm_exec_params *params, struct vmm_process **ret);
void vmm_process_free(struct vmm_process *p);
int vmm_process_open_endpoints(struct vmm_process *p, const struct vmm_exec_params *params, char *err, size_t errlen);
int vmm_process_attach_open(struct vmm_process *p, unsigned seq);
/* process-log.c: the k8s-file log's size and rotation (after its fd is open), and one write. */
int vmm_process_log_setup(struct vmm_process *p, const struct vmm_exec_params *params);
/* The daemon's --default-log for an exec that names no log and no stdout/stderr endpoint: true
 * with *ret the params to use (their log path in buf), false to keep params as they are. */
bool vmm_process_log_default(const struct vmm_process *p, const struct vmm_exec_params *params,
                             struct vmm_exec_params *ret, char *buf, size_t len);
void vmm_process_log_measure(struct vmm_process *p);   /* after the fd changed (ReopenLog) */
void vmm_process_journal_write(struct vmm_process *p, enum log_k8s_stream stream, const void *data, size_t len);
int vmm_process_log_write(struct vmm_process *p, enum log_k8s_stream stream, const void *data, size_t len,
                          uint64_t realtime_ns);
/* process-input.c: exec -i without a stdin path: the attach clients feed stdin (after attach_open). */
int vmm_process_stdin_from_attach(struct vmm_process *p, bool stdin_once, char *err, size_t errlen);
void vmm_process_on_wait(const struct bridge_result *res, void *userdata);
void vmm_process_set_exit(struct vmm_process *p, enum vmm_exit_kind kind, int code, const char *message);
void vmm_process_maybe_report(struct vmm_process *p);
void vmm_process_report(struct vmm_process *p);
/* Stdio streams held daemon-wide (listeners, relay streams, pending execs'), for max_streams. */
unsigned vmm_streams_held(struct vmm *m);
unsigned vmm_streams_held_bound(struct vmm *m);
/* Listens once on the stream's port; the connection starts a new relay stream from s->counters, or
 * resumes s->stream when one was kept across a save. */
int vmm_stream_listen(struct vmm_stream *s);
/* After a restore: whether the guest will dial this stream again (see vmm_stream.no_redial). */
bool vmm_stream_redial_expected(const struct vmm_stream *s);
void vmm_stream_release(struct vmm_stream *s);

/* vmm.c, for restore.c: a VM is allocated, filled, given its bridge, then published. */
int vmm_vm_alloc(struct vmm *m, const char *name, const struct relay_transport *t, struct vmm_vm **ret);
int vmm_vm_start_bridge(struct vmm_vm *vm);
void vmm_vm_publish(struct vmm_vm *vm);
void vmm_vm_discard(struct vmm_vm *vm);
int vmm_container_track(struct vmm_vm *vm, const char *id);

/* save.c, for process.c and vmm.c */
void vmm_save_abandon(struct vmm_vm *vm);
void vmm_save_stream_frozen(struct vmm_vm *vm);
void vmm_reattach_bridge_connected(struct vmm_vm *vm);
struct vmm_save_op;
/* vm-fence.c: one owner per transport. take: -EBUSY (another daemon holds it) with its pid and
 * generation in err. check: -ESTALE when the lock is at a newer generation than generation.
 * own: records generation as ours, durably. */
int vmm_vm_fence_take(struct vmm_vm *vm, char *err, size_t errlen);
void vmm_vm_fence_drop(struct vmm_vm *vm);
uint64_t vmm_vm_fence_generation(const struct vmm_vm *vm);
int vmm_vm_fence_check(struct vmm_vm *vm, uint64_t generation, char *err, size_t errlen);
int vmm_vm_fence_own(struct vmm_vm *vm, uint64_t generation);

/* vmm.c: one duration into a histogram. */
void vmm_duration_observe(struct vmm_duration_hist *h, uint64_t ns);
void vmm_emit(struct vmm *m, enum vmm_event_kind kind, const char *vm, const char *container_id, uint32_t pid,
              const struct vmm_exit *exit, const char *message);
