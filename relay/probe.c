/* relay/probe.c: checks at relay_new() that the kernel has the io_uring opcodes and ring features relay/ relies on. */
#include <errno.h>

#include "relay/internal.h"
#include "relay/probe.h"

/* Without NODROP an overflowing CQ loses completions, and with them the references streams hold
 * for their requests; without EXT_ARG liburing waits with a timeout SQE whose completion carries
 * user_data the dispatcher would take for an op. */
#define RELAY_RING_FEATURES_NEEDED (IORING_FEAT_NODROP | IORING_FEAT_EXT_ARG)

static const unsigned relay_opcodes_needed[] = {
        IORING_OP_READ,     /* files, ttys; pipes without READ_MULTISHOT */
        IORING_OP_WRITEV,   /* towards pipes, fifos and files */
        IORING_OP_SENDMSG,  /* gathered sends to sockets; channels */
        IORING_OP_SEND,     /* the resume header */
        IORING_OP_RECV,     /* multishot into the pool; channels; the resume header */
        IORING_OP_ACCEPT,   /* multishot, listeners */
        IORING_OP_POLL_ADD, /* a stdin stream's guest hanging up */
        IORING_OP_ASYNC_CANCEL,
        /* Multishot recv and accept on a provided-buffer ring are flags, not opcodes, so the probe
         * cannot show them: SEND_ZC came in the same release (6.0) as multishot recv, the last of
         * them, and stands for it. */
        IORING_OP_SEND_ZC,
};

int relay_features_check(unsigned ring_features, const struct io_uring_probe *p, struct relay_features *ret)
{
        if ((ring_features & RELAY_RING_FEATURES_NEEDED) != RELAY_RING_FEATURES_NEEDED)
                return -EOPNOTSUPP;
        for (size_t i = 0; i < ELEMENTSOF(relay_opcodes_needed); i++)
                if (!io_uring_opcode_supported(p, (int)relay_opcodes_needed[i]))
                        return -EOPNOTSUPP;
        *ret = (struct relay_features){
                .read_mshot = io_uring_opcode_supported(p, RELAY_OP_READ_MULTISHOT),
        };
        return 0;
}

int relay_features_probe(struct io_uring *ring, struct relay_features *ret)
{
        struct io_uring_probe *p;
        int k;

        /* NULL when the kernel predates IORING_REGISTER_PROBE (5.6), or without memory. */
        p = io_uring_get_probe_ring(ring);
        if (!p)
                return -EOPNOTSUPP;
        k = relay_features_check(ring->features, p, ret);
        io_uring_free_probe(p);
        return k;
}

void relay_recv_budget_learnt(struct relay *r, bool works)
{
        r->mshot_limit = works;
}
