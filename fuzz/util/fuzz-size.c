/* fuzz/util/fuzz-size.c: any string through size_parse; owns nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/size.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What was accepted is exactly the digits times the suffix's power of 1024, computed here another
 * way (digit by digit, with overflow checks), so a wrapped or misread value aborts. */
static int expected(const char *s, uint64_t *ret)
{
        uint64_t v = 0;
        size_t n = strlen(s);
        unsigned shift = 0;

        if (n && strchr("kKmMgG", s[n - 1])) {
                shift = strchr("kK", s[n - 1]) ? 10 : strchr("mM", s[n - 1]) ? 20 : 30;
                n--;
        }
        if (!n)
                return -1;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(s[i] - '0'), &v))
                        return -2;
        }
        if (shift && v > (UINT64_MAX >> shift))
                return -2;
        *ret = v << shift;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char s[64];
        uint64_t got = 7, want = 0;
        int r, e;

        if (size >= sizeof(s) || memchr(data, '\0', size))
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        r = size_parse(s, &got);
        e = expected(s, &want);
        if (r < 0 && got != 7)
                abort(); /* out-params are set only on success */
        if ((r == 0) != (e == 0) || (r == 0 && got != want))
                abort();
        return 0;
}
