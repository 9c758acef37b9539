/* daemon/exit-file.c: see exit-file.h. */
#include "daemon/exit-file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/macro.h"

static int write_all(int fd, const char *s, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, s, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? negative_errno() : -EIO;
                s += n;
                len -= (size_t)n;
        }
        return 0;
}

int exit_file_write(int dirfd, const char *name, int status)
{
        _cleanup_close_ int fd = -1;
        char tmp[256], text[16];
        int n = snprintf(text, sizeof(text), "%d", status), r;

        if (!name[0] || name[0] == '.' || strchr(name, '/') ||
            snprintf(tmp, sizeof(tmp), ".%s.tmp", name) >= (int)sizeof(tmp))
                return -EINVAL;
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0)
                return negative_errno();
        r = write_all(fd, text, (size_t)n);
        if (r == 0 && close(TAKE_FD(fd)) < 0)
                r = negative_errno();
        if (r == 0 && renameat(dirfd, tmp, dirfd, name) < 0)
                r = negative_errno();
        if (r < 0)
                (void)unlinkat(dirfd, tmp, 0);
        return r;
}
