/* relay/probe.h: the io_uring features relay/ relies on, checked once at relay_new(), and what the loop learnt of the optional ones; owns nothing. */
#pragma once

#include <stdbool.h>
#include <liburing.h>

struct relay;

/* The kernel opcode number; liburing 2.3 predates it, so SQEs are filled by hand. */
#define RELAY_OP_READ_MULTISHOT 49

struct relay_features {
        bool read_mshot; /* IORING_OP_READ_MULTISHOT (6.7): pipes and fifos read without re-arming */
};

/* Whether a kernel with these ring features (io_uring_params.features) and this opcode probe has
 * everything relay/ needs; -EOPNOTSUPP naming nothing more precise, since the caller only needs to
 * know that this kernel is too old. Pure, so it can be checked against any probe. */
int relay_features_check(unsigned ring_features, const struct io_uring_probe *p, struct relay_features *ret);
/* The same for a ring that exists: asks its kernel. */
int relay_features_probe(struct io_uring *ring, struct relay_features *ret);

/* The multishot recv byte budget cannot be probed (it rides in an SQE field older kernels ignore
 * or refuse): the loop learns it from the first budgeted receive. The readers are inline in
 * internal.h (every receive asks). */
void relay_recv_budget_learnt(struct relay *r, bool works);
