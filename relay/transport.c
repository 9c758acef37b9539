/* relay/transport.c: naming of the guest-facing endpoints of each transport. */
#include <stdio.h>
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

const char *relay_transport_kind_to_string(enum relay_transport_kind k)
{
        switch (k) {
        case RELAY_TRANSPORT_HVSOCK: return "hvsock";
        case RELAY_TRANSPORT_VSOCK: return "vsock";
        default: return NULL;
        }
}
