/* cli/tty.h: the CLI's own terminal while it relays a remote console: raw mode, restored on every exit path, and its size. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <termios.h>

struct cli_tty {
        int fd; /* -1: not a terminal, nothing to restore */
        struct termios saved;
};

/* Puts fd in raw mode if it is a terminal (keystrokes such as Ctrl-C then reach the remote
 * console as bytes); ret->fd stays -1 when it is not one. 0 or -errno. */
int cli_tty_make_raw(int fd, struct cli_tty *ret);
/* Restores what cli_tty_make_raw() changed; a no-op when it changed nothing. Idempotent. */
void cli_tty_restore(struct cli_tty *t);
/* The size of the terminal on fd: 0, or -ENOTTY when fd is no terminal. */
int cli_tty_size(int fd, uint16_t *ret_height, uint16_t *ret_width);
