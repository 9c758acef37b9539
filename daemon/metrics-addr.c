/* daemon/metrics-addr.c: parses a --metrics-listen address and binds a loopback TCP one. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/metrics-addr.h"

static bool is_loopback(const struct sockaddr_storage *sa)
{
        if (sa->ss_family == AF_INET)
                return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
        return sa->ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

int metrics_addr_parse(const char *s, struct metrics_addr *ret, const char **ret_why)
{
        struct metrics_addr a = { 0 };
        char host[INET6_ADDRSTRLEN + 2];
        const char *colon, *h = s;
        size_t hlen;
        unsigned long port;
        char *end;

        if (s[0] == '/') {
                if (strlen(s) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
                        *ret_why = "a Unix socket path must fit in 107 bytes";
                        return -EINVAL;
                }
                a.path = s;
                *ret = a;
                return 0;
        }
        colon = strrchr(s, ':');
        if (!colon) {
                *ret_why = "give HOST:PORT (a loopback address) or an absolute Unix socket path";
                return -EINVAL;
        }
        hlen = (size_t)(colon - s);
        if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
                h = s + 1;
                hlen -= 2;
        }
        errno = 0;
        port = strtoul(colon + 1, &end, 10);
        if (hlen == 0 || hlen >= sizeof(host) || !colon[1] || *end || errno || port > 65535 || colon[1] == '-' ||
            colon[1] == '+') {
                *ret_why = "give HOST:PORT with a numeric address and a port from 0 to 65535";
                return -EINVAL;
        }
        memcpy(host, h, hlen);
        host[hlen] = '\0';
        if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&a.sa)->sin_addr) == 1) {
                ((struct sockaddr_in *)&a.sa)->sin_family = AF_INET;
                ((struct sockaddr_in *)&a.sa)->sin_port = htons((uint16_t)port);
                a.len = sizeof(struct sockaddr_in);
        } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&a.sa)->sin6_addr) == 1) {
                ((struct sockaddr_in6 *)&a.sa)->sin6_family = AF_INET6;
                ((struct sockaddr_in6 *)&a.sa)->sin6_port = htons((uint16_t)port);
                a.len = sizeof(struct sockaddr_in6);
        } else {
                *ret_why = "the address must be numeric (127.0.0.1, [::1])";
                return -EINVAL;
        }
        /* The metrics name every VM: they are not for the network at large. */
        if (!is_loopback(&a.sa)) {
                *ret_why = "only a loopback address (127.0.0.0/8, ::1) or a Unix socket is served";
                return -EINVAL;
        }
        *ret = a;
        return 0;
}

int metrics_addr_listen_inet(const struct metrics_addr *a, int *ret_fd, char *name, size_t name_len)
{
        struct sockaddr_storage bound;
        socklen_t blen = sizeof(bound);
        char host[INET6_ADDRSTRLEN];
        int one = 1, fd;

        fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (const struct sockaddr *)&a->sa, a->len) < 0 || listen(fd, 64) < 0 ||
            getsockname(fd, (struct sockaddr *)&bound, &blen) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        if (bound.ss_family == AF_INET) {
                inet_ntop(AF_INET, &((struct sockaddr_in *)&bound)->sin_addr, host, sizeof(host));
                snprintf(name, name_len, "http://%s:%u/metrics", host, ntohs(((struct sockaddr_in *)&bound)->sin_port));
        } else {
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&bound)->sin6_addr, host, sizeof(host));
                snprintf(name, name_len, "http://[%s]:%u/metrics", host,
                         ntohs(((struct sockaddr_in6 *)&bound)->sin6_port));
        }
        *ret_fd = fd;
        return 0;
}
