/* daemon/upgrade.h: struct upgrade owns one live upgrade at a time on the old daemon (the new vsockmuxd it spawned, the handover socket, the deadline) and the new daemon's side of the handover; borrows the relay, reaches the daemon only through the ops it is given. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "relay/relay.h"
#include "state.pb-c.h"
#include "util/macro.h"

#define UPGRADE_DEFAULT_TIMEOUT_NS (30ull * 1000000000ull)
#define UPGRADE_MAX_TIMEOUT_NS (600ull * 1000000000ull)
#define UPGRADE_WHY_MAX 256u
#define UPGRADE_MAX_ARGS 128u
/* The option the old daemon adds to the new one's command line: the handover socket's fd. */
#define UPGRADE_HANDOVER_OPTION "--handover-fd"
#define UPGRADE_HANDOVER_FD 3
/* How long a stop's handover may wait for the socket's buffer, and the next daemon for it. */
#define UPGRADE_STORE_IO_TIMEOUT_NS (2ull * 1000000000ull)

/* The fds a handover carries; a Handover's *_fd fields are indices into it. */
struct upgrade_fds {
        int *fds; /* owned: closed once sent (the new daemon gets duplicates) */
        size_t n, cap;
};
/* Takes fd (also on failure); *ret_index is its index for the Handover message. */
int upgrade_fds_add(struct upgrade_fds *f, int fd, int32_t *ret_index);

struct upgrade;

struct upgrade_ops {
        /* Starts holding quiet what the new daemon takes over (the VMs): upgrade_held(u, ...) follows
         * exactly once, later, on the loop. Returns 0, or -errno with a one-line reason in why
         * (nothing held then). NULL: nothing to hold. */
        int (*hold)(void *userdata, struct upgrade *u, char *why, size_t len);
        /* The hold did not finish in time: let go of it, serving on as before; why says what was
         * still not quiet. */
        void (*unhold)(void *userdata, char *why, size_t len);
        /* All held: stops what the new daemon takes over and fills h and fds with it. Returns 0, or
         * -errno with a one-line reason in why (thaw follows then). */
        int (*freeze)(void *userdata, Vsockmux__State__Handover *h, struct upgrade_fds *fds, char *why, size_t len);
        /* Frees what freeze put in h (not the fds). */
        void (*handover_done)(void *userdata, Vsockmux__State__Handover *h);
        /* The new daemon did not take over: serve on exactly as before the freeze, taking back
         * from fds what it needs (an fd taken is set to -1). */
        void (*thaw)(void *userdata, Vsockmux__State__Handover *h, struct upgrade_fds *fds);
        /* upgrade_store(): passes fd (taken, also on failure), the socket the handover waits in, to
         * whoever keeps it for the next daemon. Returns 0, or -errno with why (thaw follows). */
        int (*store)(void *userdata, int fd, char *why, size_t len);
        /* The new daemon (pid; 0 after upgrade_store()) serves, or will: this one goes. */
        void (*handed_over)(void *userdata, pid_t pid);
};

/* One request's outcome: 0 and the new pid, or -errno and why (a line naming the binary). */
typedef void (*upgrade_done_fn)(int r, pid_t pid, const char *binary, const char *why, void *userdata);

/* argv is the command line to run the new binary with (argv[0] replaced, UPGRADE_HANDOVER_OPTION
 * dropped and added again), copied. */
int upgrade_new(struct relay *r, char *const argv[], const struct upgrade_ops *ops, void *userdata,
                struct upgrade **ret);
struct upgrade *upgrade_free(struct upgrade *u);
DEFINE_CLEANUP(struct upgrade *, upgrade_free);

/* Replaces this daemon with binary (NULL or "": the executable it was started from, read again
 * from disk by its path; timeout_ns 0: UPGRADE_DEFAULT_TIMEOUT_NS). Returns 0, and done follows
 * exactly once, later, on the loop; or -errno with why (-EALREADY while one runs), done not called
 * and nothing changed. */
int upgrade_start(struct upgrade *u, const char *binary, uint64_t timeout_ns, upgrade_done_fn done, void *userdata,
                  char *why, size_t len);
/* A stop that keeps every guest connection: the handover upgrade_start() would send a new
 * daemon waits instead in a socket that ops->store passes on (systemd's fd store), for the next
 * vsockmuxd to take over from (upgrade_receive()). The same hold, freeze and rollback; done
 * follows exactly once (pid 0 on success), possibly before this returns 0. -errno with why:
 * nothing changed. */
int upgrade_store(struct upgrade *u, uint64_t timeout_ns, upgrade_done_fn done, void *userdata, char *why, size_t len);
/* From ops->hold: 0, all is quiet and the upgrade goes on; -errno with why, it fails (the ops let
 * go of the hold themselves). */
void upgrade_held(struct upgrade *u, int r, const char *why);
/* The request's client went away: the upgrade goes on, done is not called. */
void upgrade_forget(struct upgrade *u, void *userdata);

/* The path /proc/self/exe names, without the " (deleted)" a replaced file leaves. */
int upgrade_self_path(char **ret);

/* ---- the new daemon's side ---- */

/* Reads the handover from fd (blocking, at most timeout_ns per read). Returns 0 with the message
 * and its fds, or -EPIPE (the peer closed before a whole one: none was left), -EPROTONOSUPPORT,
 * -EBADMSG or -errno, with why. */
int upgrade_receive(int fd, uint64_t timeout_ns, Vsockmux__State__Handover **ret, int **ret_fds, size_t *ret_n_fds,
                    char *why, size_t len);
/* Answers the old daemon: "ready" (r == 0) or why it cannot take over. */
int upgrade_answer(int fd, int r, const char *why);
/* After "ready": waits (bounded by UPGRADE_MAX_TIMEOUT_NS) for the old daemon's "go", so a new
 * daemon the old one's deadline kills meanwhile never touched a guest connection. 0: go; -errno:
 * the old daemon closed the socket or went (it no longer serves either), or no word in time. */
int upgrade_await_go(int fd);
