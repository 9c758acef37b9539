/* daemon/metrics-addr.h: the --metrics-listen address: parsing (loopback or a Unix path only) and binding a TCP one; owns nothing but the fd it returns. */
#pragma once

#include <stddef.h>
#include <sys/socket.h>

/* Where to listen: a loopback address and port ("127.0.0.1:9464", "[::1]:9464", port 0 picks
 * one) or an absolute Unix socket path. */
struct metrics_addr {
        struct sockaddr_storage sa;
        socklen_t len;
        const char *path; /* a Unix socket: the path (borrowed) */
};

/* Returns 0, or -EINVAL with *ret_why naming the rule: an address that is not numeric, not
 * loopback, or without a port 0-65535. */
int metrics_addr_parse(const char *s, struct metrics_addr *ret, const char **ret_why);

/* Binds and listens on a (not a Unix path), non-blocking and close-on-exec; *ret_fd and the URL
 * in name ("http://127.0.0.1:9464/metrics", the port the kernel picked for 0) on success. */
int metrics_addr_listen_inet(const struct metrics_addr *a, int *ret_fd, char *name, size_t name_len);
