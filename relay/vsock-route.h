/* relay/vsock-route.h: pure cid -> registration table of one AF_VSOCK port; owns its array, borrows the registrations. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Sanity bound on VMs sharing one port number in one daemon. */
#define RELAY_VSOCK_ROUTE_MAX 65536u
/* CIDs 0..2 are hypervisor/local/host; -1U is VMADDR_CID_ANY: none of them is a VM. */
#define RELAY_VSOCK_CID_FIRST_GUEST 3u

struct relay_vsock_route_entry {
        uint32_t cid;
        void *reg;
};

struct relay_vsock_route {
        struct relay_vsock_route_entry *entries;
        size_t n, cap;
};

/* -EADDRINUSE when the cid is already registered, -EINVAL for a non-guest cid. */
int relay_vsock_route_add(struct relay_vsock_route *rt, uint32_t cid, void *reg);
/* -ENOENT when absent. */
int relay_vsock_route_remove(struct relay_vsock_route *rt, uint32_t cid);
/* The routing decision for a connection from peer_cid: 0 and *ret_reg, or -ECONNREFUSED when no
 * VM with that CID listens on this port. */
int relay_vsock_route_decide(const struct relay_vsock_route *rt, uint32_t peer_cid, void **ret_reg);
void relay_vsock_route_done(struct relay_vsock_route *rt);
