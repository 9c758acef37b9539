/* daemon/endpoint.c: opening a client-named host endpoint (fifo, regular file, Unix socket) without blocking, checked for its role. */
#include "daemon/endpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "util/macro.h"

const char *endpoint_kind_to_string(enum endpoint_kind k)
{
        switch (k) {
        case ENDPOINT_FIFO: return "fifo";
        case ENDPOINT_FILE: return "file";
        case ENDPOINT_SOCKET: return "socket";
        case ENDPOINT_DEVICE: return "device";
        default: return "invalid";
        }
}

static int endpoint_connect(const char *path, int *ret_fd)
{
        _cleanup_close_ int fd = -1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        /* A Unix stream connect completes at once or fails with EAGAIN on a full backlog: never
         * wait for a peer that is not accepting. */
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return negative_errno();
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* The relay's io_uring requests wait for a pipe to have room or data only on a blocking fd; on
 * an O_NONBLOCK one they complete with -EAGAIN at once. The open itself was non-blocking. */
static int endpoint_make_blocking(int fd)
{
        int fl = fcntl(fd, F_GETFL);

        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
                return negative_errno();
        return 0;
}

static int endpoint_open_fifo(const char *path, int flags, enum endpoint_role role, int *ret_fd)
{
        _cleanup_close_ int fd = -1;
        int r;

        /* containerd's rule: opening never waits for, and never fails for want of, the other end.
         * A sink is opened read-write, so it has a reader from the start (no ENXIO) and a reader
         * that goes away and comes back loses nothing: the pipe fills and the guest is held back.
         * The daemon never reads from it. */
        fd = open(path, flags | (role == ENDPOINT_SINK ? O_RDWR : O_RDONLY));
        if (fd < 0)
                return negative_errno();
        r = endpoint_make_blocking(fd);
        if (r < 0)
                return r;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int endpoint_open(const char *path, enum endpoint_role role, int *ret_fd, enum endpoint_kind *ret_kind)
{
        _cleanup_close_ int fd = -1;
        enum endpoint_kind kind;
        struct stat st;
        int flags = O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW;

        if (!path || path[0] != '/' || strnlen(path, ENDPOINT_PATH_MAX) >= ENDPOINT_PATH_MAX)
                return -EINVAL;
        /* A sink is mostly a new file (a restore of 1,000 processes names 1,000): created without a
         * look first. O_EXCL opens nothing that is there already, a symlink included, and leaves
         * that to the lstat below to judge. */
        if (role == ENDPOINT_SINK) {
                fd = open(path, flags | O_WRONLY | O_APPEND | O_CREAT | O_EXCL, 0640);
                if (fd < 0 && errno != EEXIST)
                        return negative_errno();
        }
        if (fd >= 0)
                kind = ENDPOINT_FILE;
        else if (lstat(path, &st) < 0)
                return negative_errno();
        else if (S_ISLNK(st.st_mode)) {
                return -ELOOP;
        } else if (S_ISSOCK(st.st_mode)) {
                int r = endpoint_connect(path, &fd);

                if (r < 0)
                        return r;
                kind = ENDPOINT_SOCKET;
        } else if (S_ISFIFO(st.st_mode)) {
                int r = endpoint_open_fifo(path, flags, role, &fd);

                if (r < 0)
                        return r;
                kind = ENDPOINT_FIFO;
        } else if (S_ISCHR(st.st_mode)) {
                /* /dev/null and the like; the caller's rights decide which devices. */
                fd = open(path, flags | (role == ENDPOINT_SINK ? O_WRONLY : O_RDONLY));
                if (fd < 0)
                        return negative_errno();
                kind = ENDPOINT_DEVICE;
        } else if (S_ISREG(st.st_mode)) {
                fd = open(path, flags | (role == ENDPOINT_SINK ? O_WRONLY | O_APPEND : O_RDONLY));
                if (fd < 0)
                        return negative_errno();
                kind = ENDPOINT_FILE;
        } else
                return -EINVAL;

        *ret_fd = TAKE_FD(fd);
        if (ret_kind)
                *ret_kind = kind;
        return 0;
}
