/* bridge/calls.h: struct bridge_calls owns one bridge's call table (id -> call, deadlines, id counter); no I/O, borrows callbacks' userdata. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/heap.h"
#include "util/list.h"
#include "util/macro.h"

struct bridge_response;

/* Live plus zombie entries per bridge; thousands of waits fit with room to spare. */
#define BRIDGE_CALLS_MAX 262144u
/* Completed calls remembered so that a late reply for them is swallowed, oldest forgotten first. */
#define BRIDGE_CALLS_MAX_ZOMBIES 4096u
#define BRIDGE_DEADLINE_NONE UINT64_MAX

enum bridge_status {
        BRIDGE_STATUS_OK,           /* the guest answered Result 0 */
        BRIDGE_STATUS_GUEST_ERROR,  /* the guest answered a nonzero Result: hresult + message */
        BRIDGE_STATUS_CLOSED,       /* the bridge was lost (or freed) before the answer: "bridge closed" */
        BRIDGE_STATUS_TIMEOUT,      /* the call's own timeout elapsed */
        BRIDGE_STATUS_EXIT_LOST,    /* WaitForProcess: the guest no longer knows the pid; never exit 0 */
        BRIDGE_STATUS_ALREADY_GONE, /* Signal/Shutdown: the process or container was gone already; a success */
        BRIDGE_STATUS_BAD_REPLY,    /* the answer was well-formed JSON but not what this call expects */
        BRIDGE_STATUS_SEND_FAILED,  /* the request could not be written (migrating: only this call fails) */
        _BRIDGE_STATUS_MAX,
        _BRIDGE_STATUS_INVALID = -EINVAL,
};

struct bridge_result {
        /* 0 for OK and ALREADY_GONE; -EREMOTEIO guest error, -ENOTCONN closed, -ETIMEDOUT timeout,
         * -ECHILD exit status lost, -EPROTO bad reply, or the write's -errno for SEND_FAILED. */
        int error;
        enum bridge_status status;
        int32_t hresult;     /* the guest's Result; 0 unless it answered with an error */
        const char *message; /* never NULL; the guest's ErrorMessage with the HRESULT, or our reason */
        uint64_t call_id;
        uint32_t pid;      /* ExecuteProcess: the new process */
        int32_t exit_code; /* WaitForProcess with OK: the exit code; -1 otherwise */
        bool signaled;     /* WaitForProcess with OK: a signal killed it, the guest did not say which (exit_code -1) */
        bool probed;       /* WaitForProcess: the answer came from a reconnect probe */
        const struct bridge_response *response; /* valid during the callback; NULL without an answer */
};

typedef void (*bridge_call_fn)(const struct bridge_result *res, void *userdata);

enum bridge_call_flag {
        BRIDGE_CALL_ADOPTED = 1u << 0,  /* pre-registered: its request was sent by someone else (another daemon) */
        BRIDGE_CALL_PROBE = 1u << 1,    /* an internal reconnect probe */
        BRIDGE_CALL_INTERNAL = 1u << 2, /* sent by the connection itself (negotiate, probes) */
};

struct bridge_call {
        uint64_t id;
        uint32_t type;  /* request type (BRIDGE_RPC_*) */
        uint32_t flags; /* enum bridge_call_flag */
        struct heap_node
                deadline; /* key: absolute deadline, BRIDGE_DEADLINE_NONE (wait for ever, never in the heap); tie: id */
        uint64_t generation;         /* which guest connection carried the request; 0 = none (adopted) */
        uint64_t backing_generation; /* the connection on which a backing wait stands in for it; 0 = none */
        char *container_id;          /* waits and signals: which process; NULL otherwise */
        uint32_t pid;
        bridge_call_fn fn;
        void *userdata;

        /* table bookkeeping */
        bool zombie;
        struct bridge_call *hash_next;
        struct list_head node; /* live list (oldest first) or zombie list */
};

struct bridge_calls;

int bridge_calls_new(struct bridge_calls **ret);
/* Drops every entry WITHOUT calling back: fail them first with bridge_calls_fail_all(). */
struct bridge_calls *bridge_calls_free(struct bridge_calls *t);
DEFINE_CLEANUP(struct bridge_calls *, bridge_calls_free);

/* The id the next bridge_calls_add() will use. */
uint64_t bridge_calls_next_id(const struct bridge_calls *t);
/* Raises the counter to `next`; equal is a no-op, lower is refused with -ERANGE. */
int bridge_calls_seed_next_id(struct bridge_calls *t, uint64_t next);

/* Registers a call under the next id (before its frame is written). deadline_ns is absolute.
 * container_id may be NULL and is copied. -ENOSPC over BRIDGE_CALLS_MAX, -EOVERFLOW when ids
 * are used up, -ENOMEM. */
int bridge_calls_add(struct bridge_calls *t, uint32_t type, uint32_t flags, uint64_t deadline_ns,
                     const char *container_id, uint32_t pid, bridge_call_fn fn, void *userdata,
                     struct bridge_call **ret);
/* Registers a call under `id` without sending anything (adopts a request someone else sent). When
 * a live call with that id exists it is returned unchanged (it keeps its own callback) and the
 * return value is 1; a new entry returns 0. A zombie with that id is forgotten first. Raises the
 * counter above id so new calls never collide. */
int bridge_calls_preregister(struct bridge_calls *t, uint64_t id, uint32_t type, const char *container_id, uint32_t pid,
                             bridge_call_fn fn, void *userdata, struct bridge_call **ret);

/* A live call, or NULL. */
struct bridge_call *bridge_calls_get(struct bridge_calls *t, uint64_t id);
bool bridge_calls_is_zombie(struct bridge_calls *t, uint64_t id);
/* Forgets a zombie (its late reply arrived). Returns true if there was one. */
bool bridge_calls_forget_zombie(struct bridge_calls *t, uint64_t id);

/* Removes the call and runs its callback exactly once. With keep_zombie, the id is remembered so a
 * late reply for it is swallowed instead of being treated as unknown. res->call_id is filled in. */
void bridge_calls_complete(struct bridge_calls *t, struct bridge_call *c, const struct bridge_result *res,
                           bool keep_zombie);
/* Removes the call WITHOUT a callback (its request was never sent). */
void bridge_calls_cancel(struct bridge_calls *t, struct bridge_call *c);

/* Completes every live call with (status, error, message). With keep_zombies, each becomes a
 * zombie (a late answer from the guest is swallowed); without, every zombie is forgotten too.
 * Callbacks may add calls; those are completed too. Returns how many completed. */
size_t bridge_calls_fail_all(struct bridge_calls *t, enum bridge_status status, int error, const char *message,
                             bool keep_zombies);
/* Completes every live call whose deadline is <= now_ns with TIMEOUT, leaving a zombie. */
size_t bridge_calls_expire(struct bridge_calls *t, uint64_t now_ns);
/* Earliest deadline, BRIDGE_DEADLINE_NONE when no live call has one. */
uint64_t bridge_calls_next_deadline(const struct bridge_calls *t);

size_t bridge_calls_count(const struct bridge_calls *t); /* live */
size_t bridge_calls_zombie_count(const struct bridge_calls *t);

/* Copies the ids of live calls matching `type` (0 = any) into a new array (oldest first), so the
 * caller may complete or add calls while walking it. */
int bridge_calls_list(const struct bridge_calls *t, uint32_t type, uint64_t **ret_ids, size_t *ret_n);

const char *bridge_status_to_string(enum bridge_status s);
