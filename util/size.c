/* util/size.c: parsing a size an operator wrote. */
#include <errno.h>
#include <stdlib.h>

#include "util/size.h"

static unsigned size_shift(char c)
{
        switch (c) {
        case 'K':
        case 'k': return 10;
        case 'M':
        case 'm': return 20;
        case 'G':
        case 'g': return 30;
        default: return 0;
        }
}

int size_parse(const char *s, uint64_t *ret)
{
        unsigned long long v;
        unsigned shift = 0;
        char *end;

        /* strtoull would take a sign or leading space: a "-1" must not become 2^64-1. */
        if (!s || s[0] < '0' || s[0] > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (*end) {
                shift = size_shift(*end);
                if (!shift || end[1])
                        return -EINVAL;
        }
        if (shift && v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret = (uint64_t)v << shift;
        return 0;
}
