/* daemon/relay-log.c: see relay-log.h. The texts are the ones relay/ wrote itself, which tests,
 * docs and operators grep for. */
#include "daemon/relay-log.h"

#include <stdio.h>
#include <string.h>

#include "util/log.h"

#define LINE_MAX_TEXT 640

static void describe_ring(const struct relay_event *ev, char *buf, size_t len)
{
        snprintf(buf, len, "%s failed", ev->what ?: "the ring");
}

static void describe_listener(const struct relay_event *ev, char *buf, size_t len)
{
        switch (ev->kind) {
        case RELAY_EVENT_UNLINK_FAILED: snprintf(buf, len, "removing %s failed", ev->path ?: "?"); break;
        case RELAY_EVENT_LISTENER_FAILED:
                if (ev->path)
                        snprintf(buf, len, "listener on %s failed", ev->path);
                else
                        snprintf(buf, len, "listener on vsock port %u failed", ev->port);
                break;
        default:
                if (ev->path)
                        snprintf(buf, len, "accept on %s failed, retrying", ev->path);
                else
                        snprintf(buf, len, "vsock accept on port %u failed, retrying", ev->port);
        }
}

static void describe_vsock(const struct relay_event *ev, char *buf, size_t len)
{
        if (ev->kind == RELAY_EVENT_PEER_UNKNOWN)
                snprintf(buf, len, "vsock port %u: peer of fd %d unknown, closing", ev->port, ev->fd);
        else
                snprintf(buf, len, "vsock port %u: refusing connection from unexpected CID %u", ev->port, ev->cid);
}

typedef void (*describe_fn)(const struct relay_event *ev, char *buf, size_t len);

static const struct {
        enum log_level level;
        describe_fn describe;
} relay_event_lines[_RELAY_EVENT_KIND_MAX] = {
        [RELAY_EVENT_RING_FAILED] = { LOG_LEVEL_ERROR, describe_ring },
        [RELAY_EVENT_UNLINK_FAILED] = { LOG_LEVEL_WARN, describe_listener },
        [RELAY_EVENT_LISTENER_FAILED] = { LOG_LEVEL_WARN, describe_listener },
        [RELAY_EVENT_ACCEPT_RETRY] = { LOG_LEVEL_WARN, describe_listener },
        [RELAY_EVENT_PEER_UNKNOWN] = { LOG_LEVEL_WARN, describe_vsock },
        [RELAY_EVENT_CID_REFUSED] = { LOG_LEVEL_WARN, describe_vsock },
};

void relay_log_event(const struct relay_event *ev)
{
        char text[LINE_MAX_TEXT];

        if (ev->kind < 0 || ev->kind >= _RELAY_EVENT_KIND_MAX || !relay_event_lines[ev->kind].describe)
                return;
        relay_event_lines[ev->kind].describe(ev, text, sizeof(text));
        /* An error ends the line, as log_errno() wrote it. */
        if (ev->error < 0)
                log_msg(relay_event_lines[ev->kind].level, "relay: %s: %s", text, strerror(-ev->error));
        else
                log_msg(relay_event_lines[ev->kind].level, "relay: %s", text);
}

void relay_log_leftovers(const struct relay_stats *st)
{
        if (st->streams || st->listeners || st->chans)
                log_warn("relay: freed with %u streams, %u listeners, %u channels still open", st->streams,
                         st->listeners, st->chans);
}
