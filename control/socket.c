/* control/socket.c: creating the control socket file and checking who connects. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/socket.h"
#include "util/macro.h"

#define CONTROL_SOCKET_BACKLOG 128
/* SO_PEERGROUPS is read into a buffer this size first; larger sets are fetched at their size. */
#define CONTROL_PEER_GROUPS_INITIAL 64u
#define CONTROL_PEER_GROUPS_MAX 65536u

static int make_parent_dir(const char *path)
{
        _cleanup_free_ char *dir = strdup(path);
        char *slash;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* -EADDRINUSE when a server answers at path, 0 when nothing does (the file may then go). */
static int probe_live(const struct sockaddr_un *sa, socklen_t salen)
{
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *)sa, salen) == 0 || errno == EAGAIN)
                return -EADDRINUSE;
        return 0;
}

int control_socket_listen(const char *path, gid_t group, int *ret_fd, struct stat *ret_st)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        socklen_t salen;
        _cleanup_close_ int fd = -1;
        mode_t mode = group == (gid_t)-1 ? 0600 : 0660, old_umask;
        struct stat st;
        int r;

        if (!path || path[0] != '/')
                return -EINVAL;
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);

        r = make_parent_dir(path);
        if (r < 0)
                return r;
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return -EEXIST;
                r = probe_live(&sa, salen);
                if (r < 0)
                        return r;
                if (unlink(path) < 0 && errno != ENOENT)
                        return -errno;
        }

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* Nobody else may connect in the window between bind() and chmod(). */
        old_umask = umask(0177);
        r = bind(fd, (struct sockaddr *)&sa, salen);
        umask(old_umask);
        if (r < 0)
                return -errno;
        if ((group != (gid_t)-1 && chown(path, (uid_t)-1, group) < 0) || chmod(path, mode) < 0 ||
            lstat(path, &st) < 0) {
                r = -errno;
                unlink(path);
                return r;
        }
        if (listen(fd, CONTROL_SOCKET_BACKLOG) < 0) {
                r = -errno;
                unlink(path);
                return r;
        }
        *ret_fd = TAKE_FD(fd);
        *ret_st = st;
        return 0;
}

void control_socket_unlink(const char *path, const struct stat *st)
{
        struct stat now;

        if (path && lstat(path, &now) == 0 && now.st_dev == st->st_dev && now.st_ino == st->st_ino)
                (void)unlink(path);
}

bool control_peer_allowed(const struct ucred *peer, const gid_t *groups, size_t n_groups,
                          uid_t owner_uid, gid_t group)
{
        if (peer->uid == 0 || peer->uid == owner_uid)
                return true;
        if (group == (gid_t)-1)
                return false;
        if (peer->gid == group)
                return true;
        for (size_t i = 0; i < n_groups; i++)
                if (groups[i] == group)
                        return true;
        return false;
}

int control_peer_check(int fd, uid_t owner_uid, gid_t group, struct ucred *ret_peer)
{
        struct ucred peer = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
        socklen_t len = sizeof(peer);
        _cleanup_free_ gid_t *groups = NULL;
        size_t n_groups = 0;

        *ret_peer = peer;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0)
                return -errno;
        *ret_peer = peer;

        if (group != (gid_t)-1 && peer.uid != 0 && peer.uid != owner_uid && peer.gid != group) {
                socklen_t glen = CONTROL_PEER_GROUPS_INITIAL * sizeof(gid_t);

                for (int attempt = 0; attempt < 2; attempt++) {
                        if (glen > CONTROL_PEER_GROUPS_MAX * sizeof(gid_t))
                                return -E2BIG;
                        free(groups);
                        groups = malloc(glen ? glen : sizeof(gid_t));
                        if (!groups)
                                return -ENOMEM;
                        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0) {
                                n_groups = glen / sizeof(gid_t);
                                break;
                        }
                        /* ERANGE reports the size needed in glen. */
                        if (errno != ERANGE || attempt == 1)
                                return -errno;
                }
        }
        return control_peer_allowed(&peer, groups, n_groups, owner_uid, group) ? 1 : 0;
}
