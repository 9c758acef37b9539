/* sim/ack.c: the host's delivery acks (VsockmuxStdioAck) on a stdout/stderr connection. */
#include "sim/ack.h"

#include <errno.h>
#include <stdbool.h>

#include "util/unaligned.h"

/* count + lag in our numbering; false when it falls below 0 (older than where we went on). */
static bool ack_ours(uint64_t count, int64_t lag, uint64_t *ret)
{
        if (lag < 0 && count < (uint64_t) - (lag + 1) + 1)
                return false;
        *ret = count + (uint64_t)lag;
        return true;
}

int sim_ack_feed(struct sim_ack *a, const uint8_t *data, size_t len, int64_t lag, uint64_t sent, uint64_t *acked,
                 uint64_t *ret_bad)
{
        while (len > 0) {
                uint64_t ours = 0;

                a->raw[a->have++] = *data++;
                len--;
                if (a->have < SIM_ACK_SIZE)
                        continue;
                a->have = 0;
                /* Equal is the count a new connection hears first; older is a host that knows
                 * less than an earlier one told us, which frees nothing. */
                if (!ack_ours(unaligned_read_le64(a->raw), lag, &ours) || ours < *acked) {
                        a->stale++;
                        continue;
                }
                if (ours == *acked)
                        continue;
                if (ours > sent) {
                        *ret_bad = ours;
                        return -EPROTO;
                }
                *acked = ours;
        }
        return 0;
}
