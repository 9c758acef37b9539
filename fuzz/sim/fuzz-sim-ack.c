/* fuzz/sim/fuzz-sim-ack.c: any bytes from a host through sim_ack_feed, split anywhere; owns nothing. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sim/ack.h"
#include "util/unaligned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The same input fed in one piece and in pieces whose lengths the input picks: the split never
 * changes the outcome, the count only goes forward and never past what was sent. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct sim_ack whole = {}, split = {};
        uint64_t acked_whole = 0, acked_split = 0, bad_whole = 0, bad_split = 0, sent;
        int64_t lag;
        size_t step, off = 0;
        int r_whole, r_split = 0;

        if (size < 17)
                return 0;
        lag = (int64_t)unaligned_read_le64(data);
        sent = unaligned_read_le64(data + 8);
        step = (size_t)data[16] % 13 + 1;
        data += 17;
        size -= 17;
        r_whole = sim_ack_feed(&whole, data, size, lag, sent, &acked_whole, &bad_whole);
        while (off < size && r_split == 0) {
                size_t n = size - off < step ? size - off : step;
                uint64_t before = acked_split;

                r_split = sim_ack_feed(&split, data + off, n, lag, sent, &acked_split, &bad_split);
                if (acked_split < before || acked_split > sent)
                        abort();
                off += n;
        }
        if (r_whole != r_split || acked_whole != acked_split || (r_whole < 0 && bad_whole != bad_split))
                abort();
        if (r_whole < 0 && (r_whole != -EPROTO || bad_whole <= sent))
                abort();
        if (r_whole == 0 && whole.have != size % SIM_ACK_SIZE)
                abort();
        return 0;
}
