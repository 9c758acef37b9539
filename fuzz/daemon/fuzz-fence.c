/* fuzz/daemon/fuzz-fence.c: any bytes as a transport lock file through fence_parse; owns nothing.
 * The lock file is shared with other daemons (and anyone who may write next to the socket), so
 * what it says is outside input. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/fence.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Refused: nothing is set. Accepted: the pid is a real one (or 0 with generation 0 for an empty
 * file), and what fence_set_generation would write back parses to the same values. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint64_t gen = 7, gen2 = 0;
        pid_t pid = 7, pid2 = 0;
        char canon[96];
        int n;

        if (fence_parse((const char *)data, size, &gen, &pid) < 0) {
                if (gen != 7 || pid != 7)
                        abort();
                return 0;
        }
        if (size == 0)
                return gen == 0 && pid == 0 ? 0 : (abort(), 0);
        if (pid <= 0)
                abort();
        n = snprintf(canon, sizeof(canon), "generation %" PRIu64 " pid %d\n", gen, (int)pid);
        if (n <= 0 || fence_parse(canon, (size_t)n, &gen2, &pid2) < 0 || gen2 != gen || pid2 != pid)
                abort();
        return 0;
}
