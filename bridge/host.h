/* bridge/host.h: struct bridge_host owns one VM's bridge on the relay loop (listener on 0x40000000, the current guest channel, the timeout timer, the bridge_conn); borrows the relay. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "bridge/conn.h"
#include "relay/relay.h"
#include "util/macro.h"

#define BRIDGE_HOST_PORT UINT32_C(0x40000000)
/* Frames are at most 64 KiB; a little more lets the next header arrive behind a full frame. */
#define BRIDGE_HOST_MAX_RX (BRIDGE_MAX_FRAME + 4096u)
/* Requests queued towards a guest that does not read. Only a bound, nothing is preallocated: a
 * restore sends one probe (~200 bytes) per adopted wait in one burst, so 16 MiB covers tens of
 * thousands of them; past it a write fails and the guest connection is dropped (bridge-protocol.md B5). */
#define BRIDGE_HOST_MAX_TX (16u << 20)
/* The smallest configurable frame limit: negotiation and a short exec must still fit. */
#define BRIDGE_HOST_MIN_FRAME 4096u

/*
 * Restore on a migration destination (F3, V1), on the loop thread before returning to the loop:
 *   bridge_host_new(); bridge_host_set_migrating(h, true);   -- the guest's first frames are held
 *   bridge_host_seed_next_id(h, saved_next_id);              -- before any negotiation takes an id
 *   bridge_host_preregister_wait(h, saved_wait_id, ...) per process, watch_container() per container
 * then on on_state_change(CONNECTED): bridge_host_set_migrating(h, false) and, once nothing more
 * is to be registered, bridge_host_end_resume_window(h) (what nobody claimed is discarded).
 * Registering after the connection also works: answers and notifications that came first are held.
 * Each adopted wait is probed after negotiation: an exit that happened while detached completes
 * it, "not found" completes it as exit status lost (never exit 0).
 */

struct bridge_host;

struct bridge_host_ops {
        /* Optional. CONNECTED means calls may be sent; MIGRATING means detached with calls kept. */
        void (*on_state_change)(struct bridge_host *h, enum bridge_conn_state old_state,
                                enum bridge_conn_state new_state, void *userdata);
        /* Optional. Every container notification as routed (see bridge_conn_ops.notification). */
        void (*on_notification)(struct bridge_host *h, const struct bridge_notification *n, bool watched,
                                void *userdata);
        /* Optional. What happened, for the owner's log: the connection's events (bridge_conn_ops.event)
         * and this binding's own. It must not call into h. */
        void (*on_event)(struct bridge_host *h, const struct bridge_event *ev, void *userdata);
};

/*
 * Listens (RELAY_LISTEN_MANY) on BRIDGE_HOST_PORT of the VM's transport: the listening socket
 * exists when this returns. Every accepted guest connection is negotiated; a newer one replaces
 * the current one (which is then treated as lost). ops may be NULL. Errors as relay_listen(), or
 * -ENOMEM.
 */
int bridge_host_new(struct relay *r, const struct relay_transport *t, const struct bridge_host_ops *ops, void *userdata,
                    struct bridge_host **ret);
/*
 * Stops listening, drops the guest connection, and completes every outstanding call with
 * "bridge closed" and every watcher with -ENOTCONN: all those callbacks run BEFORE this returns,
 * none after. May be called from one of this host's own callbacks: the memory then goes when
 * that callback's caller unwinds, and h must not be used again either way.
 */
struct bridge_host *bridge_host_free(struct bridge_host *h);
DEFINE_CLEANUP(struct bridge_host *, bridge_host_free);

/*
 * Save: lets go of the bridge port so another daemon can listen there. Stops listening (the
 * socket file goes) and drops the guest connection. Call it with migrating on, so every call is
 * kept (otherwise they fail as on any loss). Idempotent.
 */
void bridge_host_release(struct bridge_host *h);
/* Listens on the bridge port again after bridge_host_release() (a resume, or a save rolled
 * back). 0 when already listening; errors as relay_listen(). */
int bridge_host_relisten(struct bridge_host *h);
bool bridge_host_is_listening(const struct bridge_host *h);

enum bridge_conn_state bridge_host_state(const struct bridge_host *h);
/* Both sides agreed on exactly-once stdio across reconnects (V4), on the current connection.
 * Record it per exec: a guest keeps the mode a process's streams started with, across bridge
 * reconnects. With it, every stdio connection opens with an 8-byte little-endian count: ours of
 * bytes received on stdout/stderr (we write it), the guest's of stdin bytes received (it writes
 * it; we replay from there). See test_agreed_resume_stdio_with_byte_count_handshake. */
bool bridge_host_stdio_resume(const struct bridge_host *h);
/* Delivery acks agreed too (never without resume): every stdout/stderr stream started while this
 * holds must send the guest its delivered counts (relay_stream_set_ack), or its replay buffer
 * never frees. */
bool bridge_host_stdio_ack(const struct bridge_host *h);
/* The stdin end confirmation agreed too (never without resume): every stdin stream started while
 * this holds keeps its connection after its end for the guest's count
 * (relay_stream_set_eof_confirm), or the guest takes the host's close for a lost host. */
bool bridge_host_stdin_eof(const struct bridge_host *h);
/* Lower-cased RuntimeOsType of the last negotiation, NULL before one. */
const char *bridge_host_runtime_os(const struct bridge_host *h);
/* See bridge_conn_set_offer_stdio_resume(): default on; turn it off before the guest connects
 * when the stdio owner does not implement the V4 byte-count handshake. */
void bridge_host_set_offer_stdio_resume(struct bridge_host *h, bool offer);
/* See bridge_conn_set_offer_stdio_ack(): default on, offered only with resume. */
void bridge_host_set_offer_stdio_ack(struct bridge_host *h, bool offer);
/* The state machine underneath, for queries (held counts, generation, outstanding calls). */
struct bridge_conn *bridge_host_conn(struct bridge_host *h);

/* See bridge_conn_set_migrating(): while on, losing the guest keeps calls (and opens the resume
 * window). The window stays open until bridge_host_end_resume_window(): call it once the restore
 * has pre-registered its waits and watched its containers (held messages are then discarded). */
void bridge_host_set_migrating(struct bridge_host *h, bool migrating);
bool bridge_host_is_migrating(const struct bridge_host *h);
void bridge_host_begin_resume_window(struct bridge_host *h);
void bridge_host_end_resume_window(struct bridge_host *h);

/* Caps frames both ways (header included), BRIDGE_HOST_MIN_FRAME..BRIDGE_MAX_FRAME, 0 = the hard
 * BRIDGE_MAX_FRAME; else -EINVAL. A bigger frame from the guest drops that guest connection (told);
 * a call whose request would be bigger fails with -EMSGSIZE and the connection stays. Applies to
 * guest connections accepted after the call. */
int bridge_host_set_max_frame(struct bridge_host *h, size_t max_frame);
size_t bridge_host_max_frame(const struct bridge_host *h);
/* See bridge_conn_unanswered_probes(). */
unsigned bridge_host_unanswered_probes(const struct bridge_host *h);

/* See bridge_conn_set_call_timeout(): default 5 minutes (bridge-protocol.md B4). */
int bridge_host_set_call_timeout(struct bridge_host *h, uint64_t timeout_ns);
/* See bridge_conn_set_reconnect_grace(). */
int bridge_host_set_reconnect_grace(struct bridge_host *h, uint64_t grace_ns);

uint64_t bridge_host_next_id(const struct bridge_host *h);
int bridge_host_seed_next_id(struct bridge_host *h, uint64_t next);

/* Typed calls: see bridge/conn.h for results. cb runs exactly once iff 0 is returned, and not
 * before the call returns, except for a pre-registered wait whose held answer was waiting (or a
 * watcher whose notification was held). Other calls' callbacks may run inside a call when its
 * write fails outside migration and the guest connection is dropped. Calls need CONNECTED
 * (-ENOTCONN); preregister and watch work in any state but CLOSED. */
int bridge_host_create_container(struct bridge_host *h, const char *container_id, const char *config_json,
                                 bridge_call_fn cb, void *userdata);
int bridge_host_exec(struct bridge_host *h, const char *container_id, const struct bridge_process_params *params,
                     const struct bridge_stdio_ports *ports, bridge_call_fn cb, void *userdata);
int bridge_host_wait(struct bridge_host *h, const char *container_id, uint32_t pid, uint32_t timeout_ms,
                     bridge_call_fn cb, void *userdata, uint64_t *ret_call_id);
int bridge_host_signal(struct bridge_host *h, const char *container_id, uint32_t pid, int signal, bridge_call_fn cb,
                       void *userdata);
int bridge_host_resize(struct bridge_host *h, const char *container_id, uint32_t pid, uint16_t height, uint16_t width,
                       bridge_call_fn cb, void *userdata);
int bridge_host_shutdown(struct bridge_host *h, const char *container_id, enum bridge_shutdown_kind kind,
                         bridge_call_fn cb, void *userdata);
int bridge_host_preregister_wait(struct bridge_host *h, uint64_t call_id, const char *container_id, uint32_t pid,
                                 bridge_call_fn cb, void *userdata);
/* A live hand-over's wait, its request sent on the adopted connection: not probed. */
int bridge_host_adopt_wait(struct bridge_host *h, uint64_t call_id, const char *container_id, uint32_t pid,
                           bridge_call_fn cb, void *userdata);
int bridge_host_watch_container(struct bridge_host *h, const char *container_id, bridge_notify_fn cb, void *userdata);
int bridge_host_unwatch_container(struct bridge_host *h, const char *container_id);

/*
 * A live upgrade hands the bridge to the new daemon without the guest noticing: no reconnect, no
 * negotiation, no probe. On the old daemon:
 *   bridge_host_hold(h, fn)          -- nothing more is read or written; fn once nothing is in flight
 *   bridge_host_hand_over(h, &hv)    -- the listener, the connection and what it had buffered, out
 * or bridge_host_unhold(h) to serve on (a rollback). On the new one, bridge_host_adopt(&hv), then
 * bridge_host_preregister_wait() for every outstanding wait (their ids travel with the processes).
 */
struct bridge_host_handover {
        int listener_fd;  /* the bridge port, listening; -1: none */
        int guest_fd;     /* the negotiated guest connection; -1: none */
        uint8_t *rx, *tx; /* received, not yet a whole frame; queued, not yet written */
        size_t rx_len, tx_len;
        char *runtime_os;    /* as negotiated; NULL before a negotiation */
        bool stdio_resume;   /* V4 agreed on this connection */
        bool stdio_ack;      /* delivery acks agreed on it too */
        bool stdin_eof;      /* the stdin end confirmation agreed on it too */
        uint64_t generation; /* the connection's number (probes skip calls sent on it) */
        uint64_t next_id;    /* the next call id */
};
/* Closes the fds still in it and frees the buffers; accepts NULL. */
void bridge_host_handover_done(struct bridge_host_handover *hv);

typedef void (*bridge_host_held_fn)(struct bridge_host *h, void *userdata);
/* -EBUSY while bridge_conn_can_hand_over() says no (a negotiation, a call other than a wait: retry
 * once answered), -EALREADY when held. fn runs on a later loop turn, never inside the call; a guest
 * that closes meanwhile is a loss as usual, and fn does not run then. */
int bridge_host_hold(struct bridge_host *h, bridge_host_held_fn fn, void *userdata);
/* Serves on as before the hold: what was received meanwhile is handled, queued requests go out. */
void bridge_host_unhold(struct bridge_host *h);
/* After fn: fills ret (the caller owns it then) and leaves h with nothing: its calls, watchers and
 * held messages are dropped without a callback; only bridge_host_free() may follow, and it tells
 * nobody anything. -EBUSY before fn. */
int bridge_host_hand_over(struct bridge_host *h, struct bridge_host_handover *ret);
/* The new daemon: a host as bridge_host_new() makes it, but on hv's listener and connection,
 * CONNECTED at once as hv says; the next call id is hv->next_id. Takes hv's fds (set to -1) on
 * success only. -EINVAL without a listener (this daemon always listens for a guest's redial). */
int bridge_host_adopt(struct relay *r, const struct relay_transport *t, const struct bridge_host_ops *ops,
                      void *userdata, struct bridge_host_handover *hv, struct bridge_host **ret);
