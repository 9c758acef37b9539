/* control/socket.c: creating the control socket file and checking who connects. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
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

/* An absolute path as a Unix socket address; -ENAMETOOLONG rather than a truncated name. */
static int socket_addr(const char *path, struct sockaddr_un *ret_sa, socklen_t *ret_len)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t n;

        if (!path || path[0] != '/')
                return -EINVAL;
        n = strlen(path);
        if (n >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, n + 1);
        *ret_sa = sa;
        *ret_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
}

/* A daemon killed a moment ago still answers: its io_uring's pending accept holds the listener
 * until the kernel's ring teardown, which runs after the process is gone (a restart right after a
 * SIGKILL). A live server keeps answering; a dead one stops within this. */
#define PROBE_DEAD_WAIT_NS (2 * 1000000000ll)
#define PROBE_STEP_NS (20 * 1000000ll)

static int probe_once(const struct sockaddr_un *sa, socklen_t salen)
{
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *)sa, salen) == 0 || errno == EAGAIN)
                return -EADDRINUSE;
        return 0;
}

/* -EADDRINUSE when a server answers at path, 0 when nothing does (the file may then go). */
static int probe_live(const struct sockaddr_un *sa, socklen_t salen)
{
        const struct timespec step = { .tv_nsec = PROBE_STEP_NS };
        int r = 0;

        for (long long waited = 0; waited <= PROBE_DEAD_WAIT_NS; waited += PROBE_STEP_NS) {
                r = probe_once(sa, salen);
                if (r != -EADDRINUSE)
                        return r;
                (void)nanosleep(&step, NULL);
        }
        return r;
}

int control_socket_bind(int fd, const char *path, mode_t mode, gid_t group, struct stat *ret_st)
{
        struct sockaddr_un sa;
        socklen_t salen;
        struct stat st;
        int r;

        r = socket_addr(path, &sa, &salen);
        if (r < 0)
                return r;
        /* bind() creates the file with the socket inode's mode minus the umask: set the final mode
         * there first, so the file is never more open than asked, without touching the
         * process-wide umask (other threads create files). chmod() afterwards only adds back what
         * the umask took; chown() first, so the group bits never apply to the wrong group. */
        if (fchmod(fd, mode) < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *)&sa, salen) < 0)
                return -errno;
        if ((group != (gid_t)-1 && chown(path, (uid_t)-1, group) < 0) || chmod(path, mode) < 0 ||
            lstat(path, &st) < 0) {
                r = -errno;
                (void)unlink(path);
                return r;
        }
        if (ret_st)
                *ret_st = st;
        return 0;
}

int control_socket_listen(const char *path, gid_t group, gid_t read_group, int *ret_fd, struct stat *ret_st)
{
        struct sockaddr_un sa;
        socklen_t salen;
        _cleanup_close_ int fd = -1;
        mode_t mode = group == (gid_t)-1 && read_group == (gid_t)-1 ? 0600 : 0660;
        struct stat st;
        int r;

        r = socket_addr(path, &sa, &salen);
        if (r < 0)
                return r;

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
        /* One file has one group: with both, the file is 0666 and SO_PEERCRED is the only gate. */
        if (group != (gid_t)-1 && read_group != (gid_t)-1)
                mode = 0666;
        r = control_socket_bind(fd, path, mode, group != (gid_t)-1 ? group : read_group, &st);
        if (r < 0)
                return r;
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

bool control_peer_allowed(const struct ucred *peer, const gid_t *groups, size_t n_groups, uid_t owner_uid, gid_t group)
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

enum control_access control_peer_access(const struct ucred *peer, const gid_t *groups, size_t n_groups, uid_t owner_uid,
                                        gid_t group, gid_t read_group)
{
        if (control_peer_allowed(peer, groups, n_groups, owner_uid, group))
                return CONTROL_ACCESS_FULL;
        if (read_group != (gid_t)-1 && control_peer_allowed(peer, groups, n_groups, (uid_t)-1, read_group))
                return CONTROL_ACCESS_READ;
        return CONTROL_ACCESS_NONE;
}

/* SO_PEERGROUPS into a buffer grown to the size the kernel reports (ERANGE). */
static int peer_read_groups(int fd, gid_t **ret, size_t *ret_n)
{
        socklen_t glen = CONTROL_PEER_GROUPS_INITIAL * sizeof(gid_t);
        _cleanup_free_ gid_t *groups = NULL;

        for (int attempt = 0; attempt < 2; attempt++) {
                if (glen > CONTROL_PEER_GROUPS_MAX * sizeof(gid_t))
                        return -E2BIG;
                free(groups);
                groups = malloc(glen ? glen : sizeof(gid_t));
                if (!groups)
                        return -ENOMEM;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0) {
                        *ret_n = glen / sizeof(gid_t);
                        *ret = TAKE_PTR(groups);
                        return 0;
                }
                /* Before Linux 4.13 there is no SO_PEERGROUPS: the peer then counts with none, which
                 * can only give it fewer rights (endpoints open without its groups). */
                if (errno == ENOPROTOOPT) {
                        *ret_n = 0;
                        *ret = TAKE_PTR(groups);
                        return 0;
                }
                if (errno != ERANGE || attempt == 1)
                        return -errno;
        }
        return -EIO;
}

int control_peer_check(int fd, uid_t owner_uid, gid_t group, gid_t read_group, struct ucred *ret_peer,
                       gid_t **ret_groups, size_t *ret_n_groups)
{
        struct ucred peer = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
        socklen_t len = sizeof(peer);
        _cleanup_free_ gid_t *groups = NULL;
        size_t n_groups = 0;
        int r;

        *ret_peer = peer;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) < 0)
                return -errno;
        *ret_peer = peer;
        r = peer_read_groups(fd, &groups, &n_groups);
        if (r < 0)
                return r;
        r = (int)control_peer_access(&peer, groups, n_groups, owner_uid, group, read_group);
        *ret_groups = TAKE_PTR(groups);
        *ret_n_groups = n_groups;
        return r;
}
