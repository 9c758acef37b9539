/* daemon/process-private.h: the process room's structures (table, process, stream, starter, waiter), for process.c, process-stream.c, process-state.c, process-input.c, process-log.c and console.c only. */
#pragma once

#include "daemon/attach.h"
#include "daemon/log-k8s.h"
#include "daemon/process-index.h"
#include "daemon/process.h"
#include "util/list.h"

struct vmm_processes {
        const struct vmm_guest *guest;
        const struct vmm_processes_ops *ops;
        void *userdata;
        struct list_head list;
        struct pid_index pids; /* the list's processes that have a pid */
        /* Execs answered once the record holds their pid: those waiting for the next snapshot
         * (awaiting_durable) and those in one being written (awaiting_written), so that a record
         * write visits only them, not every process. */
        struct list_head durable_wait, written_wait;
        uint64_t created; /* processes made so far: each one's seq */
        unsigned n;
        unsigned n_exited;
        unsigned streams_held; /* the sum of the processes' held: max_streams asks it per exec */
        unsigned exec_seq;     /* names attach sockets before the pid is known */
        /* Cumulative, for the metrics: a forgotten process's bytes stay counted. */
        uint64_t bytes[_VMM_STREAM_KIND_MAX];
        uint64_t stream_errors;
        uint64_t dropped_bytes;
        bool handed_over; /* a live upgrade took every process: freeing tells nobody anything */
        bool stopped;     /* a recorded stop (vmm_processes_stop): the guest keeps them, a restart
                           * recovers them; freeing tells nobody anything */
};

/* The most redials a stream keeps unread at once (struct stream_redial): hcsshim's guest dials
 * again only after a write into its connection failed, so more than one needs a second drop while
 * the old connection still drains; a newer one past these is closed. */
#define VMM_STREAM_REDIALS_MAX 8u

struct vmm_stream {
        struct vmm_process *process;
        enum vmm_stream_kind kind;
        uint32_t port;   /* 0 = the process has no such stream */
        int endpoint_fd; /* until the guest connects and the stream takes it */
        int error;
        char *endpoint; /* the path the client named; NULL = kept for attach */
        struct relay_listener *listener;
        struct relay_stream *stream;
        struct stream_redial *redial;          /* redials that came while the old connection drained */
        struct relay_stream_counters counters; /* the last known, kept after the stream is gone */
        uint64_t dropped;                      /* read, never delivered: the stream failed */
        uint64_t endpoint_base;                /* a regular file sink: its length when opened (the record's) */
        /* The flags last, together: three streams per process, so no padding between them. */
        bool done;
        bool no_redial;       /* restored without the resume extension, not a container's init:
                               * hcsshim's guest will not dial it again */
        bool close_requested; /* stdin: CloseStdin; released once what was read is flushed */
        bool endpoint_is_file;
        bool vm_frozen;   /* a VM's freeze (a save, a hold, a stop) holds it, until a thaw or release */
        bool freeze_owed; /* that freeze counted it and waits for its on_stream_frozen */
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
        struct vmm_processes *table;
        uint32_t pid; /* set with process_set_pid() only: the index follows it */
        struct pid_node pid_node;
        uint64_t seq; /* creation order in the table */
        char *exec_id;
        int log_fd;                      /* k8s-file log, -1: none */
        char *log_path;                  /* for ReopenLog */
        uint64_t log_size, log_size_max; /* the current log file's bytes; its cap (0: none) */
        unsigned log_max_files;          /* kept at rotation, the current one included */
        struct opener_creds log_creds;   /* whose rights rotate it (the exec's caller), with log_groups */
        gid_t *log_groups;
        bool log_has_creds;
        struct opener_creds creds; /* whose rights opened the endpoints (the record's), with creds_groups */
        gid_t *creds_groups;
        bool has_creds;
        bool recovering;              /* imported from the record: an endpoint that cannot be reopened is dropped */
        bool awaiting_durable;        /* has its pid; its starters hear it once the record holding it is written */
        bool awaiting_written;        /* in a record being written (vmm_processes_encoded) */
        struct list_head record_link; /* in the table's durable_wait or written_wait while one of the two */
        bool log_journald;            /* its output goes to the journal (log-journald.h) */
        bool log_journald_failed;     /* said once: journald refused an entry */
        char *container_id;
        char **argv;
        size_t n_argv;
        char **env;
        size_t n_env;
        char *cwd;
        enum vmm_process_state state; /* set with process_set_state() only: held follows it */
        uint8_t held;                 /* its part of the table's streams_held (process_held_sync) */
        struct vmm_stream streams[_VMM_STREAM_KIND_MAX];
        uint64_t wait_call_id;
        bool wait_outstanding;
        bool exit_known;
        bool exit_reported;
        struct vmm_exit exit;
        struct list_head waiters;
        /* From the exec when it keeps output or stdin for attach clients, else from the first
         * Attach (an idle process with endpoints holds none), with the cap of when it started. */
        struct attach *attach;
        unsigned attach_max_clients;
        struct relay_timer *timer; /* connect timeout while pending, drain timeout after exit */
        struct list_head starters; /* struct vmm_starter: told once the pid is known or the exec failed */
        bool in_exec;              /* ExecuteProcess outstanding: its callback holds a pointer */
        bool container_init;       /* the first process exec'd in its container (hcsshim redials its stdio) */
        int killed_by;             /* the last signal Kill delivered (guest said OK); 0 = none */
        uint64_t killed_at_ns;     /* when, on the relay's clock */
        bool terminal;             /* EmulateConsole: no stderr stream */
        bool no_stderr;            /* no stderr port: a terminal, or nobody could read it */
        uint16_t console_height, console_width;
        uint64_t started_ns, exited_ns; /* CLOCK_REALTIME, for ps: pid known, exit known; 0: not (yet) */
};

extern const char *const vmm_stream_names[_VMM_STREAM_KIND_MAX];

static inline const struct vmm_guest *process_guest(const struct vmm_process *p)
{
        return p->table->guest;
}

static inline const struct vmm_context *process_ctx(const struct vmm_process *p)
{
        return p->table->guest->ctx;
}

/* process.c */
/* The process pid changed (it started, exited, went): the record (daemon/record.h) writes it
 * (now: before returning, else once this loop turn). true: a record is kept, and
 * vmm_processes_durable() follows its write (an exec's pid reaches its client only then). */
bool process_table_changed(struct vmm_processes *t, uint32_t pid, bool now);
/* Process pid with exec_id was forgotten (it is out of the table already). */
void process_table_gone(struct vmm_processes *t, uint32_t pid, const char *exec_id);
/* The pid the guest gave p (0: none yet), in the table's index too. */
void process_set_pid(struct vmm_process *p, uint32_t pid);
void process_set_state(struct vmm_process *p, enum vmm_process_state state);
/* After p's state or a stream's listener or relay stream changed: the table's streams_held, which
 * the exec caps read, follows (so that no exec walks every process to count them). */
void process_held_sync(struct vmm_process *p);
/* After a sink endpoint opened: whether it is a regular file, and its length now. */
void process_stream_note_file(struct vmm_stream *s);
uint64_t process_realtime_ns(void);
int process_new(struct vmm_processes *t, const struct vmm_exec_params *params, struct vmm_process **ret);
void process_free(struct vmm_process *p);
int process_open_endpoints(struct vmm_process *p, const struct vmm_exec_params *params, struct vmm_error *err);
int process_attach_open(struct vmm_process *p, unsigned seq);
/* process-log.c: the k8s-file log's size and rotation (after its fd is open), and one write. */
int process_log_setup(struct vmm_process *p, const struct vmm_exec_params *params);
/* Keeps creds (NULL: none) as the rights that opened its endpoints, unless it has some already. */
int process_keep_creds(struct vmm_process *p, const struct opener_creds *creds);
/* The daemon's --default-log for an exec that names no log and no stdout/stderr endpoint: true
 * with *ret the params to use (their log path in buf), false to keep params as they are. */
bool process_log_default(const struct vmm_process *p, const struct vmm_exec_params *params, struct vmm_exec_params *ret,
                         char *buf, size_t len);
void process_log_measure(struct vmm_process *p); /* after the fd changed (ReopenLog) */
void process_journal_write(struct vmm_process *p, enum log_k8s_stream stream, const void *data, size_t len);
int process_log_write(struct vmm_process *p, enum log_k8s_stream stream, const void *data, size_t len,
                      uint64_t realtime_ns);
/* process-input.c: exec -i without a stdin path: the attach clients feed stdin (after attach_open). */
int process_stdin_from_attach(struct vmm_process *p, bool stdin_once, struct vmm_error *err);
void process_on_wait(const struct bridge_result *res, void *userdata);
void process_set_exit(struct vmm_process *p, enum vmm_exit_kind kind, int code, const char *message);
/* The one line for what hcsshim's guest refuses outside any container (it answers 0xc037010e):
 * what ("signals reach") is what works only inside one, method the call it refused. */
void process_vm_level_refusal(char *buf, size_t len, const char *what, uint32_t pid, const char *method,
                              uint32_t hresult);
void process_maybe_report(struct vmm_process *p);
void process_report(struct vmm_process *p);

/* process-stream.c */
/* Listens once on the stream's port; the connection starts a new relay stream from s->counters, or
 * resumes s->stream when one was kept across a save. */
int stream_listen(struct vmm_stream *s);
/* After a restore: whether the guest will dial this stream again (see vmm_stream.no_redial). */
bool stream_redial_expected(const struct vmm_stream *s);
/* Ended, and kept with its listener and relay stream for the guest's redial (a drop can look
 * like the end): a live hand-over passes it on as it is. */
bool stream_kept_for_redial(const struct vmm_stream *s);
/* An ended stdin with the end confirmation whose exit is not reported yet: when its connection
 * went with a save or a hand-over, its port is listened on again (a restore, a rollback, a live
 * upgrade), for a guest whose count had not come yet redials for the end. */
bool stream_awaits_stdin_end_redial(const struct vmm_stream *s);
/* Releases the relay side of a stream, keeping its last counters for ps and save. */
void stream_release(struct vmm_stream *s);
void stream_mark_closed(struct vmm_stream *s);
/* A save hands the port on: no listener, no guest connection (a kept redial closed too), the relay
 * stream kept frozen for a resume. */
void stream_detach(struct vmm_stream *s);
/* A VM's freeze of one stream: true if it counts, i.e. the table's ops->on_stream_frozen follows
 * once it flushed; stream_thaw() undoes it. */
bool stream_freeze(struct vmm_stream *s);
void stream_thaw(struct vmm_stream *s);
void stream_init(struct vmm_stream *s, struct vmm_process *p, enum vmm_stream_kind kind);
/* A live upgrade's new daemon: the stream goes on over the guest's connection guest_fd (taken
 * on success only) from s->counters, into s->endpoint_fd; or accepts on the port's handed-over
 * listening socket fd. */
int stream_adopt(struct vmm_stream *s, int guest_fd);
int stream_adopt_listener(struct vmm_stream *s, int fd);
/* Redials kept, unread, behind a connection that has not ended (the guest redialled after the
 * freeze): the old daemon hands their fds out, the oldest first, one a call (-1: none left); the
 * new one keeps each (takes fd, whatever it returns) behind those before it, and goes on over each
 * in turn once the connection before it ended. */
int stream_hand_over_redial(struct vmm_stream *s);
int stream_adopt_redial(struct vmm_stream *s, int fd);
