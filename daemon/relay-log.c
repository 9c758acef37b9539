/* daemon/relay-log.c: see relay-log.h. The texts are the ones relay/ wrote itself, which tests,
 * docs and operators grep for. */
#include "daemon/relay-log.h"

#include <inttypes.h>
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

static void describe_stream(const struct relay_event *ev, char *buf, size_t len)
{
        const char *label = ev->label ?: "?";

        switch (ev->kind) {
        case RELAY_EVENT_STREAM_NOMEM: snprintf(buf, len, "%s: out of memory holding a chunk", label); break;
        case RELAY_EVENT_ENDPOINT_FAILED:
                snprintf(buf, len, "%s: endpoint failed; dropping the rest of the guest's output", label);
                break;
        case RELAY_EVENT_RECV_BUDGET_REFUSED:
                snprintf(buf, len, "kernel refuses a multishot recv byte budget; capping by cancel");
                break;
        case RELAY_EVENT_READ_MSHOT_REFUSED:
                snprintf(buf, len, "%s: READ_MULTISHOT refused (%d); using plain reads", label, ev->error);
                break;
        case RELAY_EVENT_STDIN_OVERCLAIMED:
                snprintf(buf, len, "%s: guest claims %" PRIu64 " stdin bytes, only %" PRIu64 " were sent", label,
                         ev->bytes, ev->sent);
                break;
        case RELAY_EVENT_STDIN_LOST:
                snprintf(buf, len, "%s: %" PRIu64 " stdin bytes sent before the reconnect never reached the guest",
                         label, ev->bytes);
                break;
        default:
                snprintf(buf, len, "%s: the guest confirmed stdin's end at byte %" PRIu64 " of %" PRIu64 " sent", label,
                         ev->bytes, ev->sent);
        }
}

typedef void (*describe_fn)(const struct relay_event *ev, char *buf, size_t len);

/* with_error: the line ends with the error's text, as log_errno() wrote it. */
static const struct {
        enum log_level level;
        bool with_error;
        describe_fn describe;
} relay_event_lines[_RELAY_EVENT_KIND_MAX] = {
        [RELAY_EVENT_RING_FAILED] = { LOG_LEVEL_ERROR, true, describe_ring },
        [RELAY_EVENT_UNLINK_FAILED] = { LOG_LEVEL_WARN, true, describe_listener },
        [RELAY_EVENT_LISTENER_FAILED] = { LOG_LEVEL_WARN, true, describe_listener },
        [RELAY_EVENT_ACCEPT_RETRY] = { LOG_LEVEL_WARN, true, describe_listener },
        [RELAY_EVENT_PEER_UNKNOWN] = { LOG_LEVEL_WARN, true, describe_vsock },
        [RELAY_EVENT_CID_REFUSED] = { LOG_LEVEL_WARN, false, describe_vsock },
        [RELAY_EVENT_STREAM_NOMEM] = { LOG_LEVEL_ERROR, false, describe_stream },
        [RELAY_EVENT_ENDPOINT_FAILED] = { LOG_LEVEL_WARN, true, describe_stream },
        [RELAY_EVENT_RECV_BUDGET_REFUSED] = { LOG_LEVEL_DEBUG, false, describe_stream },
        [RELAY_EVENT_READ_MSHOT_REFUSED] = { LOG_LEVEL_DEBUG, false, describe_stream },
        [RELAY_EVENT_STDIN_OVERCLAIMED] = { LOG_LEVEL_ERROR, false, describe_stream },
        [RELAY_EVENT_STDIN_LOST] = { LOG_LEVEL_WARN, false, describe_stream },
        [RELAY_EVENT_STDIN_END_MISCOUNTED] = { LOG_LEVEL_WARN, false, describe_stream },
};

void relay_log_event(const struct relay_event *ev)
{
        char text[LINE_MAX_TEXT];

        if (ev->kind < 0 || ev->kind >= _RELAY_EVENT_KIND_MAX || !relay_event_lines[ev->kind].describe)
                return;
        if (relay_event_lines[ev->kind].level > log_get_level())
                return;
        relay_event_lines[ev->kind].describe(ev, text, sizeof(text));
        if (relay_event_lines[ev->kind].with_error && ev->error < 0)
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
