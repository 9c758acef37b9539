/* cli/tty.c: the CLI's own terminal while it relays a remote console: raw mode, its restoration and its size. */
#include "cli/tty.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

int cli_tty_make_raw(int fd, struct cli_tty *ret)
{
        struct termios raw;

        ret->fd = -1;
        if (!isatty(fd))
                return 0;
        if (tcgetattr(fd, &ret->saved) < 0)
                return -errno;
        raw = ret->saved;
        cfmakeraw(&raw);
        if (tcsetattr(fd, TCSADRAIN, &raw) < 0)
                return -errno;
        ret->fd = fd;
        return 0;
}

void cli_tty_restore(struct cli_tty *t)
{
        if (!t || t->fd < 0)
                return;
        (void)tcsetattr(t->fd, TCSADRAIN, &t->saved);
        t->fd = -1;
}

int cli_tty_size(int fd, uint16_t *ret_height, uint16_t *ret_width)
{
        struct winsize ws;

        if (ioctl(fd, TIOCGWINSZ, &ws) < 0)
                return -errno;
        if (ws.ws_row == 0 || ws.ws_col == 0)
                return -ENOTTY;
        *ret_height = ws.ws_row;
        *ret_width = ws.ws_col;
        return 0;
}
