/* daemon/paths.c: confining client-named paths to the directories the daemon was given (no symlinks, no ".."). */
#include "daemon/paths.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/macro.h"

static int paths_has_dot_component(const char *path)
{
        const char *p = path;

        while (*p) {
                const char *end = strchrnul(p, '/');
                size_t n = (size_t)(end - p);

                if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return 1;
                p = *end ? end + 1 : end;
        }
        return 0;
}

static bool paths_inside(const char *root, const char *real)
{
        size_t rlen = strlen(root);

        return strcmp(real, root) == 0 || (strncmp(real, root, rlen) == 0 && real[rlen] == '/') ||
               (rlen == 1 && root[0] == '/');
}

int paths_check_confined(const char *root, const char *path)
{
        _cleanup_free_ char *dir = NULL, *real = NULL;
        char *slash;
        struct stat st;

        if (!path || path[0] != '/' || paths_has_dot_component(path))
                return -EINVAL;
        dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash == dir)
                slash[1] = '\0';
        else
                *slash = '\0';
        /* The directory is resolved, symlinks and all: what counts is where it really is. */
        real = realpath(dir, NULL);
        if (!real)
                return negative_errno();
        if (!paths_inside(root, real))
                return -EPERM;
        if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
                return -ELOOP;
        return 0;
}

int paths_open_dir(const char *root, const char *path, int *ret_dirfd, char *via, size_t vialen)
{
        _cleanup_free_ char *dir = NULL;
        _cleanup_close_ int fd = -1;
        char link[64], real[PATH_MAX];
        const char *base;
        ssize_t n;
        int r;

        if (!path || path[0] != '/' || paths_has_dot_component(path))
                return -EINVAL;
        if (root) {
                r = paths_check_confined(root, path);
                if (r < 0)
                        return r;
        }
        base = strrchr(path, '/') + 1;
        if (!*base)
                return -EINVAL;
        /* Without the trailing slash, which would make open() follow a final symlink. */
        dir = strndup(path, base - path > 1 ? (size_t)(base - path - 1) : 1);
        if (!dir)
                return -ENOMEM;
        /* O_NOFOLLOW: a directory that is itself a symlink is refused (ENOTDIR). */
        fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        /* The check above went by path: check where the directory we hold really is, so a swap
         * between the check and the open gains nothing either. */
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, real, sizeof(real) - 1);
        if (n < 0)
                return negative_errno();
        real[n] = '\0';
        if (root && !paths_inside(root, real))
                return -EPERM;
        if ((size_t)snprintf(via, vialen, "%s/%s", link, base) >= vialen)
                return -ENAMETOOLONG;
        *ret_dirfd = TAKE_FD(fd);
        return 0;
}
