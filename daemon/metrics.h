/* daemon/metrics.h: renders the daemon's numbers in the Prometheus text exposition format (version 0.0.4); owns nothing, reads the vmm and the relay. */
#pragma once

#include <stddef.h>

#include "control/server.h"
#include "daemon/vmm.h"
#include "relay/relay.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* *ret is a NUL-terminated malloc'ed text (free() it). Runs on the loop. server may be NULL
 * (not serving yet): its numbers are then 0. */
int metrics_render(struct vmm *m, struct relay *r, const struct control_server *server, char **ret, size_t *ret_len);
