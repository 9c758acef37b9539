/* daemon/endpoint.h: opens a host endpoint (fifo, regular file, Unix socket) named by a client; the caller owns the fd. */
#pragma once

#include <stdbool.h>

enum endpoint_role {
        ENDPOINT_SOURCE, /* the daemon reads from it: a process's stdin */
        ENDPOINT_SINK,   /* the daemon writes to it: stdout/stderr */
};

enum endpoint_kind {
        ENDPOINT_FIFO,
        ENDPOINT_FILE,
        ENDPOINT_SOCKET,
        ENDPOINT_DEVICE, /* a character device: /dev/null */
        _ENDPOINT_KIND_MAX,
        _ENDPOINT_KIND_INVALID = -22,
};

#define ENDPOINT_PATH_MAX 4096

/* Opens `path` without blocking, close-on-exec, with the calling thread's file-system rights (the
 * daemon calls it on its opener thread, as the control client: daemon/opener.h). A fifo never
 * needs its other end yet: a sink fifo is opened read-write so output is held, not lost, while no
 * reader is there; a fifo fd is made blocking afterwards so the relay waits on it. A sink that
 * does not exist becomes a regular file (0640) opened for append; a socket is connected; a
 * character device is opened. A symlink as the last component is refused (-ELOOP); a block
 * device or directory is -EINVAL. */
int endpoint_open(const char *path, enum endpoint_role role, int *ret_fd, enum endpoint_kind *ret_kind);
const char *endpoint_kind_to_string(enum endpoint_kind k);
