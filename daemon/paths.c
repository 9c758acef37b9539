#include "daemon/paths.h"

#include <errno.h>
#include <limits.h>
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

int paths_check_confined(const char *root, const char *path)
{
        _cleanup_free_ char *dir = NULL, *real = NULL;
        size_t rlen = strlen(root);
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
        if (!(strcmp(real, root) == 0 || (strncmp(real, root, rlen) == 0 && real[rlen] == '/') ||
              (rlen == 1 && root[0] == '/')))
                return -EPERM;
        if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
                return -ELOOP;
        return 0;
}
