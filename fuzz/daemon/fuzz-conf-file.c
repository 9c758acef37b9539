/* fuzz/daemon/fuzz-conf-file.c: any bytes as a --limits-file through conf_parse; owns nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/conf-file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct conf_key keys[] = {
        { "max-vms", 1, 65536 },
        { "max-processes", 1, 1u << 20 },
        { "a", 0, UINT64_MAX },
};

/* Accepted: only named keys are set, each within its range; refused: nothing is touched and the
 * reason is a terminated string. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint64_t values[3] = { 7, 7, 7 }, given = 99;
        char why[CONF_FILE_WHY_MAX];
        int r;

        memset(why, 'x', sizeof(why));
        r = conf_parse((const char *)data, size, keys, 3, values, &given, why, sizeof(why));
        if (r < 0) {
                if (given != 99 || values[0] != 7 || values[1] != 7 || values[2] != 7)
                        abort();
                if (!memchr(why, '\0', sizeof(why)))
                        abort();
                return 0;
        }
        if (given & ~UINT64_C(7))
                abort();
        for (unsigned i = 0; i < 3; i++) {
                if (!(given & (UINT64_C(1) << i)))
                        continue;
                if (values[i] < keys[i].min || values[i] > keys[i].max)
                        abort();
        }
        return 0;
}
