/* daemon/fence.h: one owner per VM transport: an flock'd lock file holding the generation of the state served there and its holder's pid; a struct fence owns the lock's fd. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "relay/relay.h"
#include "util/macro.h"

#define FENCE_FILE_MAX 128u

struct fence;

/* The lock file of a transport: "<uds path>.lock" beside a hybrid-vsock socket (so two daemons
 * with different state directories still meet there), "<state_dir>/cid-<N>.lock" for AF_VSOCK.
 * via is the name relay/ binds by (for hvsock the /proc/self/fd/N/name of the confined
 * directory). -ENAMETOOLONG when it does not fit. */
int fence_path(const struct relay_transport *via, const char *state_dir, char *buf, size_t len);

/* Takes the lock without waiting. -EBUSY when another daemon (or another struct vmm) holds it,
 * -EBADMSG when the file holds something that is not a fence record. The lock goes with the fd:
 * a daemon that dies, even by SIGKILL, lets go of it. */
int fence_acquire(const char *path, struct fence **ret);
/* The generation the file names: the last owner's (0 for a new file). */
uint64_t fence_generation(const struct fence *f);
/* Records gen and our pid, durably (fsync), before anything depends on it. */
int fence_set_generation(struct fence *f, uint64_t gen);
struct fence *fence_release(struct fence *f);
DEFINE_CLEANUP(struct fence *, fence_release);

/* What a lock file says without taking it (to name the holder in a refusal). */
int fence_peek(const char *path, uint64_t *ret_gen, pid_t *ret_pid);

/* Parses a lock file's contents: "" is generation 0 and no pid; otherwise
 * "generation <G> pid <P>\n", the numbers decimal, right-aligned with spaces in their fixed
 * width. -EBADMSG for anything else. */
int fence_parse(const char *buf, size_t len, uint64_t *ret_gen, pid_t *ret_pid);
