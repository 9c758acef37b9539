/* util/array.c: growing a heap array by doubling. */
#include "util/array.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int array_reserve_one(void **array, size_t n, size_t *cap, size_t size, size_t min_cap)
{
        size_t want;
        void *p;

        if (n < *cap)
                return 0;
        if (*cap > SIZE_MAX / 2)
                return -ENOMEM;
        want = *cap ? *cap * 2 : min_cap;
        if (want <= n)
                want = n + 1;
        /* Refused here, not by reallocarray: a sanitizer's reports an overflow as a fault. */
        if (size && want > SIZE_MAX / size)
                return -ENOMEM;
        p = reallocarray(*array, want, size);
        if (!p)
                return -ENOMEM;
        *array = p;
        *cap = want;
        return 0;
}
