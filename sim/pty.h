/* sim/pty.h: the consoles the simulator gives processes that ask for one (EmulateConsole): a real pty per process. */
#pragma once

#include <spawn.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_PTY_PATH_MAX 64u

/* Opens a pty master (close-on-exec) and names its slave; sets the size unless it is 0 x 0. */
int sim_pty_open(uint16_t height, uint16_t width, int *ret_master, char *ret_slave_path, size_t len);
/* The guest's ResizeConsole: TIOCSWINSZ on the master (the kernel sends the process SIGWINCH). */
int sim_pty_resize(int master, uint16_t height, uint16_t width);
/* The child, once it is a session leader (POSIX_SPAWN_SETSID), opens the slave as its controlling
 * terminal on fd 0 and takes it for 1 and 2 too: its stderr is the terminal's output, as in
 * hcsshim's guest. */
int sim_pty_spawn_actions(posix_spawn_file_actions_t *fa, const char *slave_path);
