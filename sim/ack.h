/* sim/ack.h: struct sim_ack reads the host's delivery acks on one stdout/stderr connection (8-byte little-endian counts, split anywhere); pure, no I/O, no locking. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define SIM_ACK_SIZE 8u

struct sim_ack {
        uint8_t raw[SIM_ACK_SIZE];
        unsigned have;  /* bytes of the count being read */
        uint64_t stale; /* counts that did not go forward, ignored */
};

/* Takes what the host sent. Each whole count is moved into our numbering (count + lag: where a
 * resume made us go on elsewhere than the host asked) and raises *acked when it goes forward.
 * Returns 0, or -EPROTO for a count past `sent` (the host claims bytes it never got, so nothing
 * more it says on this connection is trusted) with that count, ours, in *ret_bad. */
int sim_ack_feed(struct sim_ack *a, const uint8_t *data, size_t len, int64_t lag, uint64_t sent, uint64_t *acked,
                 uint64_t *ret_bad);
