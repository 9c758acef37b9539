/* fuzz/daemon/fuzz-metrics-addr.c: a --metrics-listen address through metrics_addr_parse; owns nothing. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/metrics-addr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whatever is accepted is a Unix path or a loopback address of the right length. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct metrics_addr a;
        const char *why = NULL;
        char s[256];

        if (size >= sizeof(s) || memchr(data, '\0', size))
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        if (metrics_addr_parse(s, &a, &why) < 0) {
                if (!why || !why[0])
                        abort();
                return 0;
        }
        if (a.path) {
                if (a.path != s || s[0] != '/')
                        abort();
                return 0;
        }
        if (a.sa.ss_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)&a.sa;

                if (a.len != sizeof(*in) || (ntohl(in->sin_addr.s_addr) >> 24) != 127)
                        abort();
        } else if (a.sa.ss_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a.sa;

                if (a.len != sizeof(*in6) || !IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
                        abort();
        } else {
                abort();
        }
        return 0;
}
