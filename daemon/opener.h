/* daemon/opener.h: the endpoint opener, a thread that opens host paths with a control client's file-system rights; owns that thread. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "daemon/endpoint.h"
#include "util/macro.h"

/* Whose rights an open uses: the control peer's SO_PEERCRED uid/gid and SO_PEERGROUPS. */
struct opener_creds {
        uid_t uid;
        gid_t gid;
        const gid_t *groups;
        size_t n_groups;
};

#define OPENER_MAX_GROUPS 65536u

struct opener;

/* Starts the thread (all signals blocked there). */
int opener_new(struct opener **ret);
struct opener *opener_free(struct opener *o);
DEFINE_CLEANUP(struct opener *, opener_free);

/* endpoint_open() on the opener thread, whose fsuid, fsgid and supplementary groups are the
 * peer's for that one call only (setfsuid/setfsgid and the raw setgroups syscall change that
 * thread alone, never the loop thread). creds NULL: the daemon's own rights. A daemon without
 * CAP_SETUID cannot take another uid's rights: it opens as itself for its own uid or root, and
 * answers -EPERM for anyone else rather than lend them its rights. An open that changes no rights
 * (creds NULL or the daemon's own, or a daemon that is not root) runs on the caller's thread, with
 * the same rights and without the hand-over. Every endpoint_open() is non-blocking, so the caller
 * waits only for the file system. */
int opener_open(struct opener *o, const struct opener_creds *creds, const char *path, enum endpoint_role role,
                int *ret_fd, enum endpoint_kind *ret_kind);
/* A log's rotation, with those rights too: PATH becomes PATH.1 (PATH.1 PATH.2, and so on, keep - 1
 * older files kept; keep 1: PATH is removed), then a fresh PATH is opened as a sink. */
int opener_open_rotated(struct opener *o, const struct opener_creds *creds, const char *path, unsigned keep,
                        int *ret_fd);
