/* tests/io-uring-skip.h: exits 77 (skipped) where this process can have no usable io_uring, the way liburing's tests do; owns nothing. */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay/relay.h"

/* Call first in main() of a test that builds a relay. ENOSYS: a kernel without io_uring; EPERM:
 * io_uring_disabled or a seccomp filter (containers); EOPNOTSUPP: relay_new()'s probe found a
 * kernel too old. Any other failure is left to the tests, which then fail. */
static inline void test_skip_without_io_uring(void)
{
        struct relay *r = NULL;
        int k = relay_new(NULL, &r);

        if (k == -ENOSYS || k == -EPERM || k == -EOPNOTSUPP) {
                printf("SKIP: no usable io_uring here: relay_new: %s\n", strerror(-k));
                exit(77);
        }
        relay_free(r);
}
