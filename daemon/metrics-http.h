/* daemon/metrics-http.h: struct metrics_http owns the --metrics-listen socket, libmicrohttpd's thread serving GET /metrics, and the loop's side of the snapshot hand-off; borrows the relay. */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "daemon/metrics-addr.h"
#include "relay/relay.h"
#include "util/macro.h"

/* How long a scrape waits for the loop to render before it answers 503. */
#define METRICS_HTTP_RENDER_TIMEOUT_MS 5000u
/* Scrapers at once; more wait in the listen backlog. */
#define METRICS_HTTP_MAX_CONNECTIONS 16u
/* A request body (never wanted) read and dropped before the answer; past it, answered at once. */
#define METRICS_HTTP_MAX_BODY 65536u
/* A connection that sends nothing for this long is closed. */
#define METRICS_HTTP_IDLE_TIMEOUT_S 10u

/* Runs on the loop: the Prometheus text, malloc'ed (NUL-terminated), or -errno. */
struct metrics_http_ops {
        int (*render)(void *userdata, char **ret_text, size_t *ret_len);
};

struct metrics_http;

/* Binds addr (a Unix socket with mode 0600, or 0660 for group, else read_group, as the control
 * socket) and starts libmicrohttpd's thread. That thread never reads what the loop owns: each
 * GET asks the loop for a fresh rendering (a byte on a socketpair the loop reads as a relay
 * channel) and waits for it under a mutex, at most METRICS_HTTP_RENDER_TIMEOUT_MS. */
int metrics_http_new(struct relay *r, const struct metrics_addr *addr, gid_t group, gid_t read_group,
                     const struct metrics_http_ops *ops, void *userdata, struct metrics_http **ret);
/* Stops the thread (a scrape waiting is answered 503), closes and removes the socket. */
struct metrics_http *metrics_http_free(struct metrics_http *h);
DEFINE_CLEANUP(struct metrics_http *, metrics_http_free);

/* What it listens on, for the log: "http://127.0.0.1:9464/metrics" or "unix:/path". */
const char *metrics_http_name(const struct metrics_http *h);
