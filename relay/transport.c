/* relay/transport.c: naming of the guest-facing endpoints of each transport. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "relay/internal.h"

int relay_transport_hvsock_path(const struct relay_transport *t, uint32_t port, char *buf, size_t len)
{
        size_t max = MIN(len, sizeof(((struct sockaddr_un *)NULL)->sun_path));
        int n;

        if (t->kind != RELAY_TRANSPORT_HVSOCK || !t->uds_path[0])
                return -EINVAL;
        if (strnlen(t->uds_path, sizeof(t->uds_path)) >= sizeof(t->uds_path))
                return -ENAMETOOLONG;
        n = snprintf(buf, len, "%s_%u", t->uds_path, port);
        if (n < 0)
                return -EINVAL;
        if ((size_t)n >= max)
                return -ENAMETOOLONG;
        return 0;
}

#define PROC_FD_PREFIX "/proc/self/fd/"

void relay_hvsock_path_at(const char *path, int *ret_dirfd, const char **ret_name)
{
        const char *p = path + strlen(PROC_FD_PREFIX), *name;
        char *end;
        long fd;

        *ret_dirfd = AT_FDCWD;
        *ret_name = path;
        if (strncmp(path, PROC_FD_PREFIX, strlen(PROC_FD_PREFIX)) != 0 || *p < '0' || *p > '9')
                return;
        fd = strtol(p, &end, 10);
        name = end + 1;
        if (*end != '/' || fd > INT32_MAX || !*name || strchr(name, '/'))
                return;
        *ret_dirfd = (int)fd;
        *ret_name = name;
}

const char *relay_transport_kind_to_string(enum relay_transport_kind k)
{
        switch (k) {
        case RELAY_TRANSPORT_HVSOCK: return "hvsock";
        case RELAY_TRANSPORT_VSOCK: return "vsock";
        default: return NULL;
        }
}
