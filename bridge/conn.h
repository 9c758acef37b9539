/* bridge/conn.h: struct bridge_conn owns one VM's host-side bridge protocol state (call table, negotiation, container watchers, held messages); sans-I/O, borrows the ops' userdata. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bridge/calls.h"
#include "bridge/held.h"
#include "bridge/msg.h"
#include "util/macro.h"

#define BRIDGE_NSEC_PER_SEC UINT64_C(1000000000)
/* A synchronous call's own timeout (upstream's 5 minutes, bridge-protocol.md B4); WaitForProcess with an
 * infinite timeout has none. */
#define BRIDGE_CONN_CALL_TIMEOUT_NS (5 * 60 * BRIDGE_NSEC_PER_SEC)
#define BRIDGE_CONN_CALL_TIMEOUT_MAX_NS (24 * 3600 * BRIDGE_NSEC_PER_SEC)
#define BRIDGE_CONN_NEGOTIATE_TIMEOUT_NS (60 * BRIDGE_NSEC_PER_SEC)
/* A reconnect grace longer than this is a typo, not a plan. */
#define BRIDGE_CONN_RECONNECT_GRACE_MAX_NS (3600 * BRIDGE_NSEC_PER_SEC)
/* The guest-side timeout of a reconnect probe (the bounded re-wait of bridge-protocol.md F2) and how long
 * we wait for its answer. */
#define BRIDGE_CONN_PROBE_TIMEOUT_MS 50u
#define BRIDGE_CONN_PROBE_DEADLINE_NS (60 * BRIDGE_NSEC_PER_SEC)
/* Messages held during a resume window until their call or container is registered (V1). */
#define BRIDGE_CONN_MAX_HELD BRIDGE_HELD_MAX
#define BRIDGE_CONN_MAX_HELD_BYTES BRIDGE_HELD_MAX_BYTES
#define BRIDGE_CONN_MAX_WATCHERS 65536u

enum bridge_conn_state {
        BRIDGE_CONN_WAITING,     /* no guest connection: not yet, or the last one was lost while not migrating */
        BRIDGE_CONN_NEGOTIATING, /* a guest connected; our NegotiateProtocol is outstanding */
        BRIDGE_CONN_CONNECTED,   /* negotiated: calls may be sent */
        BRIDGE_CONN_MIGRATING,   /* migrating and detached: the guest connection is gone, calls are kept */
        BRIDGE_CONN_CLOSED,      /* bridge_conn_close(): for good */
        _BRIDGE_CONN_STATE_MAX,
        _BRIDGE_CONN_STATE_INVALID = -EINVAL,
};

enum bridge_shutdown_kind {
        BRIDGE_SHUTDOWN_GRACEFUL,
        BRIDGE_SHUTDOWN_FORCED,
        _BRIDGE_SHUTDOWN_KIND_MAX,
        _BRIDGE_SHUTDOWN_KIND_INVALID = -EINVAL,
};

/* 0 = no such stream. The guest dials exactly the nonzero ones (the Create*Pipe flags follow them). */
struct bridge_stdio_ports {
        uint32_t stdin_port, stdout_port, stderr_port;
};

/* What happened, for the owner's log (bridge/ logs nothing). Each names the fields it fills. */
enum bridge_event_kind {
        BRIDGE_EVENT_HELD_DISCARDED,  /* count held messages discarded; what: why */
        BRIDGE_EVENT_HELD_REFUSED,    /* over the caps (count, bytes held): what (a type) id, container_id lost */
        BRIDGE_EVENT_HELD_RELEASED,   /* to a call registered late: response id, or container_id's notification */
        BRIDGE_EVENT_GRACE_STARTED,   /* count waits kept for ms while the guest reconnects */
        BRIDGE_EVENT_GRACE_EXPIRED,   /* count waits failed: no guest within ms */
        BRIDGE_EVENT_GUEST_DROPPED,   /* for a protocol error, what; migrating */
        BRIDGE_EVENT_GUEST_DETACHED,  /* error: 0 EOF, -ECANCELED let go; migrating */
        BRIDGE_EVENT_NEGOTIATED,      /* what: the runtime OS; stdio_resume, stdio_ack; id: the connection */
        BRIDGE_EVENT_MIGRATING,       /* migrating: on or off */
        BRIDGE_EVENT_PROBE_DONE,      /* probe or backing wait for pid of container_id (wait id): error -ECHILD lost */
        BRIDGE_EVENT_PROBE_NO_ANSWER, /* probe or backing wait for pid (wait id): what, still waiting */
        BRIDGE_EVENT_PROBE_UNSENT,    /* pid, error: a kept wait's probe */
        BRIDGE_EVENT_ADOPTED_PROBE_UNSENT,   /* pid, error: a pre-registered wait's probe */
        BRIDGE_EVENT_BACKING_UNSENT,         /* pid, error */
        BRIDGE_EVENT_UNWATCHED_NOTIFICATION, /* what (its type) for container_id, ignored */
        /* bridge/host.c's, on the relay */
        BRIDGE_EVENT_TIMER_UNARMED,   /* error: deadlines wait for an answer or a loss */
        BRIDGE_EVENT_FRAME_UNSENT,    /* a bytes-long request over the limit (the call fails -EMSGSIZE) */
        BRIDGE_EVENT_FRAME_REFUSED,   /* a bytes-long frame from the guest over the limit: it is dropped */
        BRIDGE_EVENT_LISTENER_FAILED, /* error: no guest can dial until a relisten */
        BRIDGE_EVENT_ACCEPT_FAILED,   /* error: that guest connection is closed */
        BRIDGE_EVENT_REPLACED,        /* a newer guest connection replaces the current one */
        BRIDGE_EVENT_ATTACH_FAILED,   /* error: the new guest connection is closed */
        BRIDGE_EVENT_RELEASED,        /* the bridge port let go; migrating */
        BRIDGE_EVENT_RELISTENED,
        _BRIDGE_EVENT_KIND_MAX,
        _BRIDGE_EVENT_KIND_INVALID = -EINVAL,
};

struct bridge_event {
        enum bridge_event_kind kind;
        int error; /* -errno or 0 */
        bool migrating, backing, stdio_resume, stdio_ack;
        uint32_t pid;
        uint64_t id, ms;
        size_t count, bytes, limit;
        const char *container_id, *what; /* or NULL; valid during the call only */
};

struct bridge_conn;

struct bridge_conn_ops {
        /* Queues one whole frame on the current guest connection: 0 or -errno. Required. */
        int (*write)(struct bridge_conn *c, const void *frame, size_t len, void *userdata);
        /* The connection dropped the guest connection on its own (protocol error, write failure,
         * failed negotiation); the binding closes the transport. Not called for bridge_conn_detach(). */
        void (*disconnect)(struct bridge_conn *c, int error, void *userdata);
        void (*state_changed)(struct bridge_conn *c, enum bridge_conn_state old_state, enum bridge_conn_state new_state,
                              void *userdata);
        /* Every container notification as it is routed (held ones when released); `watched`
         * says whether a watcher took it. Optional. */
        void (*notification)(struct bridge_conn *c, const struct bridge_notification *n, bool watched, void *userdata);
        /* Optional: one event for the owner's log; it must not call into c. */
        void (*event)(struct bridge_conn *c, const struct bridge_event *ev, void *userdata);
        /* CLOCK_MONOTONIC nanoseconds; NULL uses clock_gettime(). */
        uint64_t (*now)(struct bridge_conn *c, void *userdata);
};

/* Exactly once per watcher: the notification (error 0), or n = NULL with -ENOTCONN when the
 * connection is closed or freed first. */
typedef void (*bridge_notify_fn)(const struct bridge_notification *n, int error, void *userdata);

int bridge_conn_new(const struct bridge_conn_ops *ops, void *userdata, struct bridge_conn **ret);
/* Closes (see below), then frees. Every callback has run when it returns. Don't call it from a
 * callback of the same connection. */
struct bridge_conn *bridge_conn_free(struct bridge_conn *c);
DEFINE_CLEANUP(struct bridge_conn *, bridge_conn_free);
/* For good: every call completes with "bridge closed", every watcher with -ENOTCONN. */
void bridge_conn_close(struct bridge_conn *c);

/* A new guest connection is the transport now: NegotiateProtocol goes out at once. A guest
 * connection still attached is detached first (as a loss). -ESHUTDOWN once closed. */
int bridge_conn_attach(struct bridge_conn *c);
/* The guest connection ended (EOF, error, replaced; -ECANCELED: we let it go on purpose). Not migrating: every call fails with
 * "bridge closed" and the state is WAITING. Migrating: calls are kept and the state is MIGRATING. */
void bridge_conn_detach(struct bridge_conn *c, int error);
/* Bytes from the guest connection. Returns how many were consumed (whole frames; keep and
 * re-offer the rest with more), or -errno when the guest connection was dropped because of them
 * (told as BRIDGE_EVENT_GUEST_DROPPED, ops.disconnect already called). */
ssize_t bridge_conn_recv(struct bridge_conn *c, const void *data, size_t len);
/* The timeout of calls sent from now on (0 restores BRIDGE_CONN_CALL_TIMEOUT_NS); a finite wait
 * gets it on top of its own TimeoutInMs. -ERANGE above BRIDGE_CONN_CALL_TIMEOUT_MAX_NS. */
int bridge_conn_set_call_timeout(struct bridge_conn *c, uint64_t timeout_ns);
/* How long outstanding WaitForProcess calls outlive a lost guest connection (not migrating, no
 * protocol error): a guest that negotiates again within it gets each asked again (the probe), so
 * its exit is not lost with the connection. 0 (the default, as upstream) fails every call at once.
 * -ERANGE above BRIDGE_CONN_RECONNECT_GRACE_MAX_NS. */
int bridge_conn_set_reconnect_grace(struct bridge_conn *c, uint64_t grace_ns);
/* Completes calls whose deadline passed. */
void bridge_conn_tick(struct bridge_conn *c, uint64_t now_ns);
/* Absolute CLOCK_MONOTONIC deadline of the next timeout; BRIDGE_DEADLINE_NONE for none. */
uint64_t bridge_conn_next_deadline(const struct bridge_conn *c);

/* While migrating, losing the guest connection keeps every call (bridge-protocol.md B6) and a new one is
 * renegotiated. Setting it also opens the resume window. Clearing it while detached fails
 * the kept calls as a loss would have. */
void bridge_conn_set_migrating(struct bridge_conn *c, bool migrating);
bool bridge_conn_is_migrating(const struct bridge_conn *c);
/* In a resume window, responses with unknown ids and notifications for unwatched containers
 * are held (bounded) until their call is pre-registered or their container watched (V1). */
void bridge_conn_begin_resume_window(struct bridge_conn *c);
/* Closes the window; what is still held is discarded (BRIDGE_EVENT_HELD_DISCARDED). */
void bridge_conn_end_resume_window(struct bridge_conn *c);
bool bridge_conn_in_resume_window(const struct bridge_conn *c);
size_t bridge_conn_held_count(const struct bridge_conn *c);
/* Messages discarded because the held caps were reached, since creation. */
uint64_t bridge_conn_held_dropped(const struct bridge_conn *c);

enum bridge_conn_state bridge_conn_state(const struct bridge_conn *c);
const char *bridge_conn_state_to_string(enum bridge_conn_state s);
/* From the last successful negotiation: lower-cased RuntimeOsType (NULL before one), and whether
 * both sides agreed on the stdio resume extension (V4). */
const char *bridge_conn_runtime_os(const struct bridge_conn *c);
bool bridge_conn_stdio_resume(const struct bridge_conn *c);
/* Whether our NegotiateProtocol offers the stdio resume extension (default: yes). Takes effect at
 * the next negotiation. A host whose stdio layer does not do the V4 byte-count handshake must
 * not offer it: an agreeing guest expects that handshake on every stdio connection. */
void bridge_conn_set_offer_stdio_resume(struct bridge_conn *c, bool offer);
/* Whether both sides agreed on delivery acks (BRIDGE_STDIO_ACK_FIELD) too; never without resume. */
bool bridge_conn_stdio_ack(const struct bridge_conn *c);
/* Whether our NegotiateProtocol offers acks along with resume (default: yes). A host whose stdio
 * layer does not send them must not offer them: an agreeing guest frees nothing without them. */
void bridge_conn_set_offer_stdio_ack(struct bridge_conn *c, bool offer);
/* Whether both sides agreed on the stdin end confirmation (BRIDGE_STDIN_EOF_FIELD); never without
 * resume. */
bool bridge_conn_stdin_eof(const struct bridge_conn *c);
/* Whether our NegotiateProtocol offers it along with resume (default: yes). A host whose stdin
 * streams do not wait for the guest's count must not offer it. */
void bridge_conn_set_offer_stdin_eof(struct bridge_conn *c, bool offer);
/* How many guest connections were attached so far. */
uint64_t bridge_conn_generation(const struct bridge_conn *c);

uint64_t bridge_conn_next_id(const struct bridge_conn *c);
/* Only raises (-ERANGE for lower), so pre-registered ids stay below new ones (F3). */
int bridge_conn_seed_next_id(struct bridge_conn *c, uint64_t next);
size_t bridge_conn_outstanding(const struct bridge_conn *c);
/* Reconnect probes (WaitForProcess with TimeoutInMs BRIDGE_CONN_PROBE_TIMEOUT_MS) the guest has
 * not answered yet. It answers each on a timer, and hcsshim's guest panics, stopping its VM, if no
 * bridge connection is up by then (docs/hcsshim-guest.md): let go of the connection after them. */
unsigned bridge_conn_unanswered_probes(const struct bridge_conn *c);

/*
 * Calls. Each needs CONNECTED (-ENOTCONN otherwise). On 0, fn runs exactly once later with the
 * result; on an error return it never runs. A write failure fails only this call while migrating,
 * and also drops the guest connection otherwise (bridge-protocol.md B5). ret_call_id may be NULL.
 */
int bridge_conn_create_container(struct bridge_conn *c, const char *container_id, const char *config_json,
                                 bridge_call_fn fn, void *userdata, uint64_t *ret_call_id);
/* Exec, wait, signal and resize address a process outside any container (container_id "") with the
 * null GUID, as hcsshim's host does.
 * params NULL sends "null"; its Create*Pipe flags are overridden from ports. res->pid on success. */
int bridge_conn_exec(struct bridge_conn *c, const char *container_id, const struct bridge_process_params *params,
                     const struct bridge_stdio_ports *ports, bridge_call_fn fn, void *userdata, uint64_t *ret_call_id);
/* timeout_ms BRIDGE_WAIT_INFINITE waits for ever. res: OK with exit_code, or with `signaled` (and
 * exit_code -1) for hcsshim's ExitCode 4294967295, a process a signal killed; EXIT_LOST (-ECHILD) when
 * the guest no longer knows the pid (never exit 0, V2); GUEST_ERROR with BRIDGE_HR_TIMEOUT when a
 * finite timeout elapsed. */
int bridge_conn_wait(struct bridge_conn *c, const char *container_id, uint32_t pid, uint32_t timeout_ms,
                     bridge_call_fn fn, void *userdata, uint64_t *ret_call_id);
/* signal 0 = kill. A process that is gone already is ALREADY_GONE with error 0, as upstream
 * treats it (bridge-protocol.md E3). */
int bridge_conn_signal(struct bridge_conn *c, const char *container_id, uint32_t pid, int signal, bridge_call_fn fn,
                       void *userdata, uint64_t *ret_call_id);
int bridge_conn_resize(struct bridge_conn *c, const char *container_id, uint32_t pid, uint16_t height, uint16_t width,
                       bridge_call_fn fn, void *userdata, uint64_t *ret_call_id);
/* A container the guest does not know (0xC037010E) is ALREADY_GONE with error 0, as upstream
 * tolerates it (bridge-protocol.md X, item 12). Aimed at the null GUID the guest shuts down without
 * answering: the call ends with the connection. */
int bridge_conn_shutdown(struct bridge_conn *c, const char *container_id, enum bridge_shutdown_kind kind,
                         bridge_call_fn fn, void *userdata, uint64_t *ret_call_id);

/*
 * Adopts a WaitForProcess that another daemon sent as call_id (upstream's OpenProcessWithIO waitCallID,
 * bridge-protocol.md F2; 0 is -EINVAL): registers it without sending.
 * Returns 0 for a new entry, 1 when call_id is already outstanding (that call keeps its own
 * callback; fn will not run). A held response for call_id completes it at once (fn may run before
 * this returns). Once connected, a probe WaitForProcess with TimeoutInMs 50 follows: an exit that
 * happened while detached completes it, "not found" completes it as EXIT_LOST, "still running"
 * keeps it waiting, backed by one infinite WaitForProcess per connection in case its original
 * request never reached the guest (whichever answer comes first completes it, exactly once).
 * Waits kept across a reconnect are probed the same way. Works in every state but CLOSED (-ESHUTDOWN).
 */
int bridge_conn_preregister_wait(struct bridge_conn *c, uint64_t call_id, const char *container_id, uint32_t pid,
                                 bridge_call_fn fn, void *userdata);
/* The same for a wait whose request went out on this very connection (a live hand-over adopted
 * it): its reply comes here, so it is not probed (a probe would leave a backing wait outstanding). */
int bridge_conn_adopt_wait(struct bridge_conn *c, uint64_t call_id, const char *container_id, uint32_t pid,
                           bridge_call_fn fn, void *userdata);

/* Watches one container's next notification. -EEXIST when the container is watched already
 * (upstream's notify table refuses a duplicate, bridge-protocol.md C4).
 * A held notification for it is delivered at once (fn may run before this returns). */
int bridge_conn_watch_container(struct bridge_conn *c, const char *container_id, bridge_notify_fn fn, void *userdata);
/* Removes a watcher without calling it; -ENOENT when there is none. */
int bridge_conn_unwatch_container(struct bridge_conn *c, const char *container_id);

/* ---- a live upgrade: the connection handed to another process, never renegotiated ---- */

/* Whether the connection can be handed over now: false while negotiating, or while a call other
 * than a WaitForProcess of ours is outstanding (its answer would reach nobody; retry once it is
 * answered). The waits go with the process table (their ids), adopted by preregister there. */
bool bridge_conn_can_hand_over(const struct bridge_conn *c);
/* The other process has the connection now: drops every call, watcher and held message WITHOUT
 * a callback and closes c quietly (no state change reported). Only bridge_conn_free() after. */
void bridge_conn_hand_over(struct bridge_conn *c);
/* The other side: c (new, WAITING) takes an attached, negotiated connection as it was, generation
 * and all, and is CONNECTED (reported) without a negotiation or a probe. -EINVAL unless WAITING
 * and never attached. */
int bridge_conn_adopt(struct bridge_conn *c, uint64_t generation, const char *runtime_os, bool stdio_resume,
                      bool stdio_ack, bool stdin_eof);
