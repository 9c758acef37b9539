/* control/socket.h: the control socket file (mode, group, stale replacement) and the peer policy; owns nothing beyond the fds it returns. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Binds and listens on a non-blocking SOCK_STREAM socket at path with mode 0600, or 0660 owned by
 * group (else read_group) when either is not (gid_t)-1; 0666 with both, as one file cannot have
 * two groups (the peer check then does all the gating). The parent directory is created 0755 if missing. A stale socket
 * file is replaced; -EADDRINUSE when a live server answers there; -EEXIST when path is not a
 * socket; -ENAMETOOLONG when it does not fit sun_path. *ret_st identifies the file we made. */
int control_socket_listen(const char *path, gid_t group, gid_t read_group, int *ret_fd, struct stat *ret_st);

/* Binds the socket fd at path so the file is created with at most `mode` (never wider, whatever the
 * umask, with no window) and then exactly `mode`, group `group` unless (gid_t)-1. The process
 * umask is not touched. The attach sockets use it too. On failure the file is removed. */
int control_socket_bind(int fd, const char *path, mode_t mode, gid_t group, struct stat *ret_st);

/* Removes path only if it is still the file control_socket_listen() made. */
void control_socket_unlink(const char *path, const struct stat *st);

/* What a connected peer may call. */
enum control_access {
        CONTROL_ACCESS_NONE, /* refused at accept */
        CONTROL_ACCESS_READ, /* --read-group: only the methods marked read_only */
        CONTROL_ACCESS_FULL,
};

/* Root, the owner, or (group != (gid_t)-1) a peer whose gid or supplementary groups include it. */
bool control_peer_allowed(const struct ucred *peer, const gid_t *groups, size_t n_groups, uid_t owner_uid, gid_t group);

/* FULL for control_peer_allowed(), else READ for a member of read_group (when not (gid_t)-1),
 * else NONE. */
enum control_access control_peer_access(const struct ucred *peer, const gid_t *groups, size_t n_groups, uid_t owner_uid,
                                        gid_t group, gid_t read_group);

/* Reads SO_PEERCRED and SO_PEERGROUPS (kept: endpoints are opened with the peer's rights) and
 * returns control_peer_access(), or -errno when the credentials cannot be read. *ret_peer is
 * always filled; *ret_groups (free()) and *ret_n_groups only on success. */
int control_peer_check(int fd, uid_t owner_uid, gid_t group, gid_t read_group, struct ucred *ret_peer,
                       gid_t **ret_groups, size_t *ret_n_groups);
