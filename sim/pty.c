/* sim/pty.c: the real pty the simulator gives a process that asks for a console (EmulateConsole). */
#include "sim/pty.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "util/macro.h"

int sim_pty_resize(int master, uint16_t height, uint16_t width)
{
        struct winsize ws = { .ws_row = height, .ws_col = width };

        return ioctl(master, TIOCSWINSZ, &ws) < 0 ? -errno : 0;
}

int sim_pty_open(uint16_t height, uint16_t width, int *ret_master, char *ret_slave_path, size_t len)
{
        _cleanup_close_ int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        char path[SIM_PTY_PATH_MAX];
        int r;

        if (fd < 0)
                return -errno;
        if (grantpt(fd) < 0 || unlockpt(fd) < 0)
                return -errno;
        r = ptsname_r(fd, path, sizeof(path));
        if (r != 0)
                return -r;
        if (strlen(path) >= len)
                return -ENAMETOOLONG;
        if (height && width && (r = sim_pty_resize(fd, height, width)) < 0)
                return r;
        memcpy(ret_slave_path, path, strlen(path) + 1);
        *ret_master = TAKE_FD(fd);
        return 0;
}

int sim_pty_spawn_actions(posix_spawn_file_actions_t *fa, const char *slave_path)
{
        int r;

        /* No O_NOCTTY: a session leader without a terminal acquires the first one it opens. */
        r = posix_spawn_file_actions_addopen(fa, 0, slave_path, O_RDWR, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(fa, 0, 1);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(fa, 0, 2);
        return -r;
}
