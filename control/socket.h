/* control/socket.h: the control socket file (mode, group, stale replacement) and the peer policy; owns nothing beyond the fds it returns. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Binds and listens on a non-blocking SOCK_STREAM socket at path with mode 0600, or 0660 owned by
 * group when group != (gid_t)-1. The parent directory is created 0755 if missing. A stale socket
 * file is replaced; -EADDRINUSE when a live server answers there; -EEXIST when path is not a
 * socket; -ENAMETOOLONG when it does not fit sun_path. *ret_st identifies the file we made. */
int control_socket_listen(const char *path, gid_t group, int *ret_fd, struct stat *ret_st);

/* Removes path only if it is still the file control_socket_listen() made. */
void control_socket_unlink(const char *path, const struct stat *st);

/* Root, the owner, or (group != (gid_t)-1) a peer whose gid or supplementary groups include it. */
bool control_peer_allowed(const struct ucred *peer, const gid_t *groups, size_t n_groups,
                          uid_t owner_uid, gid_t group);

/* Reads SO_PEERCRED, and SO_PEERGROUPS when needed, and applies control_peer_allowed(). Returns 1
 * allowed, 0 refused, -errno when the credentials cannot be read. *ret_peer is always filled. */
int control_peer_check(int fd, uid_t owner_uid, gid_t group, struct ucred *ret_peer);
