/* daemon/endpoint.h: opens a host endpoint (fifo, regular file, Unix socket) named by a client; the caller owns the fd. */
#pragma once

#include <stdbool.h>

enum endpoint_role {
        ENDPOINT_SOURCE,        /* the daemon reads from it: a process's stdin */
        ENDPOINT_SINK,          /* the daemon writes to it: stdout/stderr */
};

enum endpoint_kind {
        ENDPOINT_FIFO,
        ENDPOINT_FILE,
        ENDPOINT_SOCKET,
        _ENDPOINT_KIND_MAX,
        _ENDPOINT_KIND_INVALID = -22,
};

#define ENDPOINT_PATH_MAX 4096

/* Opens `path` non-blocking and close-on-exec. A fifo must already have its other end open
 * (-ENXIO otherwise, as containerd opens it first); a sink that does not exist becomes a regular
 * file opened for append; a socket is connected. A symlink as the last component is refused
 * (-ELOOP): the daemon runs privileged and must write only where it was pointed. */
int endpoint_open(const char *path, enum endpoint_role role, int *ret_fd, enum endpoint_kind *ret_kind);
const char *endpoint_kind_to_string(enum endpoint_kind k);
