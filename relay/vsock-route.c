/* relay/vsock-route.c: which VM a vsock connection belongs to, decided from the peer CID alone. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "relay/vsock-route.h"
#include "util/array.h"

static struct relay_vsock_route_entry *route_find(const struct relay_vsock_route *rt, uint32_t cid)
{
        for (size_t i = 0; i < rt->n; i++)
                if (rt->entries[i].cid == cid)
                        return &rt->entries[i];
        return NULL;
}

int relay_vsock_route_add(struct relay_vsock_route *rt, uint32_t cid, void *reg)
{
        if (cid < RELAY_VSOCK_CID_FIRST_GUEST || cid == UINT32_MAX || !reg)
                return -EINVAL;
        if (route_find(rt, cid))
                return -EADDRINUSE;
        if (rt->n >= RELAY_VSOCK_ROUTE_MAX)
                return -ENOSPC;
        if (ARRAY_RESERVE_ONE(rt->entries, rt->n, rt->cap, 4) < 0)
                return -ENOMEM;
        rt->entries[rt->n++] = (struct relay_vsock_route_entry){ .cid = cid, .reg = reg };
        return 0;
}

int relay_vsock_route_remove(struct relay_vsock_route *rt, uint32_t cid)
{
        struct relay_vsock_route_entry *e = route_find(rt, cid);

        if (!e)
                return -ENOENT;
        *e = rt->entries[--rt->n];
        return 0;
}

int relay_vsock_route_decide(const struct relay_vsock_route *rt, uint32_t peer_cid, void **ret_reg)
{
        struct relay_vsock_route_entry *e;

        if (peer_cid < RELAY_VSOCK_CID_FIRST_GUEST || peer_cid == UINT32_MAX)
                return -ECONNREFUSED;
        e = route_find(rt, peer_cid);
        if (!e)
                return -ECONNREFUSED;
        *ret_reg = e->reg;
        return 0;
}

void relay_vsock_route_done(struct relay_vsock_route *rt)
{
        free(rt->entries);
        *rt = (struct relay_vsock_route){};
}
