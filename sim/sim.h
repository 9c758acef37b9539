/* sim/sim.h: struct sim owns one simulated guest agent: its bridge connection, containers, processes and their stdio relays. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/heap.h"
#include "util/macro.h"

#define SIM_BRIDGE_PORT UINT32_C(0x40000000)
#define SIM_HOST_CID 2u
#define SIM_REDIAL_MS 100
#define SIM_DEFAULT_REPLAY_BYTES (128u * 1024u)
#define SIM_MIN_REPLAY_BYTES 4096u
#define SIM_MAX_REPLAY_BYTES (64u * 1024u * 1024u)
#define SIM_MAX_REQUEST_THREADS 8192u     /* request handlers plus reapers; waits take none (answered inline) */
#define SIM_MAX_WAITERS 65536u            /* WaitForProcess requests pending on all processes */
#define SIM_MAX_WAITERS_PER_PROCESS 1024u /* each host that restored the VM keeps one infinite wait per process */
#define SIM_MAX_PROCESSES 4096u
#define SIM_MAX_CONTAINERS 1024u
#define SIM_THREAD_STACK (256u * 1024u) /* thousands of relay threads must stay cheap */
#define SIM_RESUME_COUNT_SIZE 8u        /* V4: little-endian byte count at the start of each stdio connection */

enum sim_fidelity {
        SIM_FIDELITY_OURS, /* the default: kinder than hcsshim's guest where ours can be, and speaks the resume extension */
        SIM_FIDELITY_UPSTREAM, /* what hcsshim's guest does (fidelity.c) */
};

struct sim_options {
        const char *hvsock_path; /* dials <path>_<port>; NULL when using AF_VSOCK */
        uint32_t cid;            /* AF_VSOCK peer when hvsock_path is NULL */
        bool announce_resume;    /* false with --no-resume */
        bool announce_ack;       /* false with --no-ack; only ever agreed with resume */
        bool announce_stdin_eof; /* false with --no-stdin-eof; only ever agreed with resume */
        size_t replay_bytes;
        unsigned drop_after_ms; /* 0 = never */
        enum sim_fidelity fidelity;
        bool no_bridge_panic;   /* --no-bridge-panic: upstream loses such a reply and lives on (bridge.c) */
        const char *stats_path; /* --stats: counts rewritten at each change (stats.c); NULL = none */
};

/* What a test may count (stats.c): replies as they went out on a connection, and the fidelity
 * branches that decide what the host sees. */
enum sim_stat {
        SIM_STAT_WAIT_EXITED_SENT,    /* a WaitForProcess answer carrying an exit code was written */
        SIM_STAT_WAIT_NOT_FOUND_SENT, /* ... "process not found" */
        SIM_STAT_WAIT_TIMEOUT_SENT,   /* ... "wait timed out" (a probe that found the process running) */
        SIM_STAT_WAIT_BEFORE_EOF,     /* upstream: a wait answered while stdout/stderr had not reached EOF */
        SIM_STAT_REPLY_LOST,          /* upstream: a reply dropped with its connection (never resent) */
        SIM_STAT_REPLY_HELD,          /* ours: a reply kept while disconnected, for the next connection */
        SIM_STAT_BRIDGE_CONNECTS,     /* bridge connections made to the host (1 = it never reconnected) */
        SIM_STAT_STDIO_REDIALS,       /* stdio connections made again after one was lost */
        SIM_STAT_WAIT_RECEIVED,       /* WaitForProcess requests read (and decoded) */
        SIM_STAT_BRIDGE_LOSSES,       /* bridge connections seen ended (a reply after it is lost or held) */
        SIM_STAT_BRIDGE_PANICS,       /* upstream: the guest agent died as hcsshim's bridge panics (bridge.c) */
        _SIM_STAT_MAX,
        SIM_STAT_NONE = -1,
};

/* A connection the drop switch can reach. Its owner closes it after sim_conn_release(). */
struct sim_conn {
        int fd;
        uint32_t port; /* the host port dialled: tells the bridge from stdio */
        bool dropped;  /* set under sim->lock by sim_drop_all() */
        struct sim_conn *next;
};

struct sim_frame_queue;
struct sim_process;
struct sim_container;
struct sim_waiter;

/* The WaitForProcess requests pending on one process (wait.c); guarded by sim->lock. */
struct sim_wait_list {
        struct sim_waiter *head;
        unsigned n;
};

/* Every pending wait, and the deadlines the timer thread answers (wait.c); guarded by sim->lock. */
struct sim_waits {
        pthread_cond_t cond;   /* the timer: a new earliest deadline, or stop (CLOCK_MONOTONIC) */
        struct heap deadlines; /* timed waiters, earliest first */
        unsigned n;            /* registered waiters, timed or not */
};

struct sim {
        struct sim_options opt;

        pthread_mutex_t lock; /* guards everything below except the bridge writer part */
        pthread_cond_t cond;  /* broadcast on process exit, thread exit and stop (CLOCK_MONOTONIC) */
        bool stopping;
        struct sim_conn *conns;
        struct sim_process *processes;
        unsigned n_processes;
        struct sim_container *containers;
        unsigned n_containers;
        unsigned n_threads;    /* request handlers and process reapers still running */
        bool resume_agreed;    /* on the current bridge connection */
        bool ack_agreed;       /* delivery acks too (never without resume_agreed) */
        bool stdin_eof_agreed; /* the stdin end confirmation too (never without resume_agreed) */
        struct sim_waits waits;

        pthread_mutex_t write_lock; /* serializes frames on the bridge; guards the two below */
        int bridge_fd;              /* -1 while disconnected */
        struct sim_frame_queue *pending;
        bool panicked; /* upstream: the agent is dead (bridge.c); nothing more goes out or is dialled */

        pthread_mutex_t stats_lock; /* guards stats (stats.c) */
        uint64_t stats[_SIM_STAT_MAX];
};

int sim_init(struct sim *s, const struct sim_options *opt);
/* Stops everything and waits for every thread; the struct can then be freed. */
void sim_done(struct sim *s);
bool sim_stopping(struct sim *s);
void sim_request_stop(struct sim *s);
/* Fault injection: shuts down every connection at once, as a vsock transport reset does. */
void sim_drop_all(struct sim *s);
/* The same for stdio connections only: the bridge stays up, as when only data channels reset. */
void sim_drop_stdio(struct sim *s);
/* Sleeps up to ms, returning early (true) once the sim is stopping. */
bool sim_sleep(struct sim *s, unsigned ms);
/* Whether the current (or last) bridge connection agreed on delivery acks. */
bool sim_ack_agreed(struct sim *s);
/* Whether the current (or last) bridge connection agreed on the stdin end confirmation. */
bool sim_stdin_eof_agreed(struct sim *s);

/* dial.c: connects to the host on `port`; ret_conn is registered for the drop switch. */
int sim_dial(struct sim *s, uint32_t port, struct sim_conn **ret_conn);
/* Unregisters and closes; returns NULL. */
struct sim_conn *sim_conn_close(struct sim *s, struct sim_conn *c);
bool sim_conn_dropped(struct sim *s, struct sim_conn *c);
int sim_write_all(int fd, const void *buf, size_t len);

/* bridge.c: the bridge connection loop, run on the calling thread until stop. */
void sim_bridge_run(struct sim *s);
/* Sends (or queues until the next connection) one frame; takes buf. */
void sim_bridge_send(struct sim *s, uint8_t *buf, size_t len);
/* sim_bridge_send() in two steps: queue (no I/O, so it may run under s->lock, fixing the order of
 * frames against other threads), then flush what is queued. */
void sim_bridge_queue(struct sim *s, uint8_t *buf, size_t len);
/* The same, counting `stat` once the frame is written (SIM_STAT_NONE: nothing). */
void sim_bridge_queue_counted(struct sim *s, uint8_t *buf, size_t len, enum sim_stat stat);
void sim_bridge_flush(struct sim *s);
void sim_bridge_free_pending(struct sim *s);
/* Whether the agent died as hcsshim's bridge panics (upstream, bridge.c): main stops it, exit status 2. */
bool sim_bridge_panicked(struct sim *s);

/* handlers.c: one request, run on its own thread; replies through sim_bridge_send(). */
struct sim_request {
        struct sim *s;
        uint32_t type;
        uint64_t id;
        char *payload;
        size_t len;
};
void sim_handle_request(struct sim_request *req);
struct sim_request *sim_request_free(struct sim_request *req);
/* WaitForProcess, on the bridge reader itself: answers now or registers a waiter; never blocks on the process. */
void sim_handle_wait(struct sim *s, uint64_t id, const void *payload, size_t len);

/* process.c */
struct bridge_request;
/* Starts the process; its exit is not reported before sim_process_announced() (the exec reply goes first). */
int sim_process_start(struct sim *s, const struct bridge_request *req, bool resume, struct sim_process **ret_proc,
                      uint32_t *ret_pid, const char **ret_reason);
/* The exec reply is out: the exit may now be reported. Drops the reference from sim_process_start(). */
void sim_process_announced(struct sim *s, struct sim_process *p);
/* A wait for pid, without blocking: 0 and the code (already exited), -ENOENT (unknown), -ETIMEDOUT (timeout 0),
 * -EBUSY (too many waiters), -ECANCELED (stopping: no reply), or -EINPROGRESS: the exit or the timer answers it. */
int sim_process_wait_start(struct sim *s, uint32_t pid, uint64_t id, const char *activity_id, uint32_t timeout_ms,
                           uint32_t *ret_exit_code);
/* 0, or -ENOENT when the process is unknown or already gone. */
int sim_process_signal(struct sim *s, uint32_t pid, int sig);
/* ResizeConsole: 0, -ENOENT as above, -ENOTTY for a process without a console. */
int sim_process_resize(struct sim *s, uint32_t pid, uint16_t height, uint16_t width);
/* Container registry. */
int sim_container_create(struct sim *s, const char *id);
/* Signals every live process of the container; -ENOENT if unknown. */
int sim_container_shutdown(struct sim *s, const char *id, bool forced);
bool sim_container_exists(struct sim *s, const char *id);
/* 1 when pid is a known process of container_id (the null GUID for VM-level ones), 0 when of another, -ENOENT. */
int sim_process_in_container(struct sim *s, uint32_t pid, const char *container_id);
/* Kills every process (teardown) and frees the tables once no thread uses them. */
void sim_processes_kill_all(struct sim *s);
void sim_processes_free(struct sim *s);

/* wait.c: pending WaitForProcess requests and the one timer thread that answers their deadlines. */
/* Starts the timer thread (counted in n_threads, gone once the sim stops). */
int sim_waits_init(struct sim *s);
/* After every thread left. */
void sim_waits_done(struct sim *s);
/* Registers a waiter on l: 0, -EBUSY over the caps, -ENOMEM. */
int sim_wait_add_locked(struct sim *s, struct sim_wait_list *l, uint64_t id, const char *activity_id,
                        uint32_t timeout_ms);
/* Unregisters every waiter of l and returns them as a chain, to answer or to free. */
struct sim_waiter *sim_wait_list_take_locked(struct sim *s, struct sim_wait_list *l);
/* Frees a chain without a reply (the sim is stopping). */
void sim_waiters_free(struct sim_waiter *chain);
/* Queues the exit code for every waiter of the chain (sim_bridge_flush() sends them) and frees it. */
void sim_waiters_queue_answers(struct sim *s, struct sim_waiter *chain, uint32_t exit_code);
/* One WaitForProcess reply. */
void sim_wait_reply(struct sim *s, uint64_t id, const char *activity_id, int32_t result, const char *message,
                    uint32_t exit_code);

/* fidelity.c: hcsshim's guest's rules, applied with --fidelity upstream only. */
struct sim_target {
        int32_t hresult; /* the error reply when the target is refused */
        const char *message;
};
bool sim_upstream(const struct sim *s);
int sim_fidelity_from_string(const char *name, enum sim_fidelity *ret);
/* The ExitCode a wait reports for a waitpid() status (-1: unknown, 255). */
uint32_t sim_fidelity_exit_code(const struct sim *s, int status);
/* Whether a request of `type` reaches container_id/pid as hcsshim's guest resolves it: 0, or
 * -ENXIO/-ENOENT with the reply to send in *ret. */
int sim_fidelity_check_target(struct sim *s, uint32_t type, const char *container_id, uint32_t pid,
                              struct sim_target *ret);

/* stats.c */
void sim_stats_init(struct sim *s);
void sim_stats_done(struct sim *s);
void sim_stat_add(struct sim *s, enum sim_stat k);

/* Starts a thread with a small stack; ret may be NULL for a detached one. Returns 0 or -errno. */
int sim_thread_start(pthread_t *ret, void *(*fn)(void *), void *arg);

/* Thread accounting: every detached thread the sim starts is counted so sim_done() can wait. */
void sim_thread_enter(struct sim *s);
void sim_thread_leave(struct sim *s);
