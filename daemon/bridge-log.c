/* daemon/bridge-log.c: see bridge-log.h. The texts are the ones tests and operators grep for. */
#include "daemon/bridge-log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"

#define KEPT " (migrating: calls kept)"
#define LINE_MAX_TEXT 640

static const char *kept(const struct bridge_event *ev)
{
        return ev->migrating ? KEPT : "";
}

static void describe_held(const struct bridge_event *ev, char *buf, size_t len)
{
        switch (ev->kind) {
        case BRIDGE_EVENT_HELD_DISCARDED:
                snprintf(buf, len, "discarding %zu held message(s): %s", ev->count, ev->what ?: "?");
                break;
        case BRIDGE_EVENT_HELD_REFUSED:
                snprintf(buf, len,
                         "resume window holds %zu message(s), %zu bytes already; dropping %s id %" PRIu64 "%s%s",
                         ev->count, ev->bytes, ev->what ?: "message", ev->id, ev->container_id ? " for container " : "",
                         ev->container_id ?: "");
                break;
        default:
                if (ev->container_id)
                        snprintf(buf, len, "releasing held notification for container %s", ev->container_id);
                else
                        snprintf(buf, len, "releasing held response id %" PRIu64 " to its adopted wait", ev->id);
        }
}

static void describe_probe(const struct bridge_event *ev, char *buf, size_t len)
{
        const char *what = ev->backing ? "backing wait" : "probe";

        switch (ev->kind) {
        case BRIDGE_EVENT_PROBE_DONE:
                snprintf(buf, len, "%s for pid %" PRIu32 " of %s (wait id %" PRIu64 "): %s", what, ev->pid,
                         ev->container_id ?: "?", ev->id,
                         ev->error == -ECHILD ? "exit status lost"
                         : ev->backing        ? "exited"
                                              : "exited while detached");
                break;
        case BRIDGE_EVENT_PROBE_NO_ANSWER:
                snprintf(buf, len, "%s for pid %" PRIu32 " (wait id %" PRIu64 ") gave no answer (%s); still waiting",
                         what, ev->pid, ev->id, ev->what ?: "?");
                break;
        case BRIDGE_EVENT_PROBE_UNSENT:
                snprintf(buf, len, "cannot probe pid %" PRIu32 ": %s", ev->pid, strerror(-ev->error));
                break;
        case BRIDGE_EVENT_ADOPTED_PROBE_UNSENT:
                snprintf(buf, len, "cannot probe adopted pid %" PRIu32 ": %s", ev->pid, strerror(-ev->error));
                break;
        default: snprintf(buf, len, "cannot back the wait for pid %" PRIu32 ": %s", ev->pid, strerror(-ev->error));
        }
}

static void describe_detached(const struct bridge_event *ev, char *buf, size_t len)
{
        if (ev->error == -ECANCELED)
                snprintf(buf, len, "guest connection released%s", kept(ev));
        else if (ev->error < 0)
                snprintf(buf, len, "guest connection lost: %s%s", strerror(-ev->error), kept(ev));
        else
                snprintf(buf, len, "guest closed the bridge%s", kept(ev));
}

static void describe_guest(const struct bridge_event *ev, char *buf, size_t len)
{
        switch (ev->kind) {
        case BRIDGE_EVENT_GRACE_STARTED:
                snprintf(buf, len, "keeping %zu waits for %" PRIu64 " ms while the guest reconnects", ev->count,
                         ev->ms);
                break;
        case BRIDGE_EVENT_GRACE_EXPIRED:
                snprintf(buf, len,
                         "the guest did not reconnect within %" PRIu64 " ms; %zu waits fail with \"bridge closed\"",
                         ev->ms, ev->count);
                break;
        case BRIDGE_EVENT_GUEST_DROPPED:
                snprintf(buf, len, "dropping the guest connection: %s%s", ev->what ?: "?",
                         ev->migrating ? KEPT : "; outstanding calls fail with \"bridge closed\"");
                break;
        case BRIDGE_EVENT_GUEST_DETACHED: describe_detached(ev, buf, len); break;
        case BRIDGE_EVENT_NEGOTIATED:
                snprintf(buf, len, "negotiated protocol 4 with a %s guest%s (connection %" PRIu64 ")", ev->what ?: "?",
                         ev->stdio_ack      ? ", stdio resume and delivery acks agreed"
                         : ev->stdio_resume ? ", stdio resume agreed"
                                            : "",
                         ev->id);
                break;
        case BRIDGE_EVENT_MIGRATING: snprintf(buf, len, "migrating %s", ev->migrating ? "on" : "off"); break;
        default:
                snprintf(buf, len, "ignoring %s notification for unwatched container %s", ev->what ?: "?",
                         ev->container_id ?: "?");
        }
}

static void describe_host(const struct bridge_event *ev, char *buf, size_t len)
{
        switch (ev->kind) {
        case BRIDGE_EVENT_TIMER_UNARMED:
                snprintf(buf, len, "cannot arm the call timer: %s", strerror(-ev->error));
                break;
        case BRIDGE_EVENT_FRAME_UNSENT:
                snprintf(buf, len, "not sending a %zu-byte frame: over the %zu-byte bridge frame limit", ev->bytes,
                         ev->limit);
                break;
        case BRIDGE_EVENT_FRAME_REFUSED:
                snprintf(buf, len,
                         "dropping the guest connection: a %zu-byte frame is over the %zu-byte bridge frame limit",
                         ev->bytes, ev->limit);
                break;
        case BRIDGE_EVENT_LISTENER_FAILED:
                snprintf(buf, len, "bridge listener failed: %s", strerror(-ev->error));
                break;
        case BRIDGE_EVENT_ACCEPT_FAILED:
                snprintf(buf, len, "cannot take the guest connection: %s", strerror(-ev->error));
                break;
        case BRIDGE_EVENT_REPLACED: snprintf(buf, len, "a newer guest connection replaces the current one"); break;
        case BRIDGE_EVENT_ATTACH_FAILED:
                snprintf(buf, len, "cannot start negotiation: %s", strerror(-ev->error));
                break;
        case BRIDGE_EVENT_RELEASED: snprintf(buf, len, "releasing the bridge port%s", kept(ev)); break;
        default: snprintf(buf, len, "listening for the guest again");
        }
}

typedef void (*describe_fn)(const struct bridge_event *ev, char *buf, size_t len);

static const struct {
        enum log_level level;
        describe_fn describe;
} bridge_event_lines[_BRIDGE_EVENT_KIND_MAX] = {
        [BRIDGE_EVENT_HELD_DISCARDED] = { LOG_LEVEL_WARN, describe_held },
        [BRIDGE_EVENT_HELD_REFUSED] = { LOG_LEVEL_WARN, describe_held },
        [BRIDGE_EVENT_HELD_RELEASED] = { LOG_LEVEL_INFO, describe_held },
        [BRIDGE_EVENT_GRACE_STARTED] = { LOG_LEVEL_INFO, describe_guest },
        [BRIDGE_EVENT_GRACE_EXPIRED] = { LOG_LEVEL_WARN, describe_guest },
        [BRIDGE_EVENT_GUEST_DROPPED] = { LOG_LEVEL_ERROR, describe_guest },
        [BRIDGE_EVENT_GUEST_DETACHED] = { LOG_LEVEL_INFO, describe_guest }, /* a loss: WARN */
        [BRIDGE_EVENT_NEGOTIATED] = { LOG_LEVEL_INFO, describe_guest },
        [BRIDGE_EVENT_MIGRATING] = { LOG_LEVEL_INFO, describe_guest },
        [BRIDGE_EVENT_PROBE_DONE] = { LOG_LEVEL_INFO, describe_probe },
        [BRIDGE_EVENT_PROBE_NO_ANSWER] = { LOG_LEVEL_WARN, describe_probe },
        [BRIDGE_EVENT_PROBE_UNSENT] = { LOG_LEVEL_WARN, describe_probe },
        [BRIDGE_EVENT_ADOPTED_PROBE_UNSENT] = { LOG_LEVEL_WARN, describe_probe },
        [BRIDGE_EVENT_BACKING_UNSENT] = { LOG_LEVEL_WARN, describe_probe },
        [BRIDGE_EVENT_UNWATCHED_NOTIFICATION] = { LOG_LEVEL_WARN, describe_guest },
        [BRIDGE_EVENT_TIMER_UNARMED] = { LOG_LEVEL_ERROR, describe_host },
        [BRIDGE_EVENT_FRAME_UNSENT] = { LOG_LEVEL_WARN, describe_host },
        [BRIDGE_EVENT_FRAME_REFUSED] = { LOG_LEVEL_ERROR, describe_host },
        [BRIDGE_EVENT_LISTENER_FAILED] = { LOG_LEVEL_ERROR, describe_host },
        [BRIDGE_EVENT_ACCEPT_FAILED] = { LOG_LEVEL_ERROR, describe_host },
        [BRIDGE_EVENT_REPLACED] = { LOG_LEVEL_INFO, describe_host },
        [BRIDGE_EVENT_ATTACH_FAILED] = { LOG_LEVEL_ERROR, describe_host },
        [BRIDGE_EVENT_RELEASED] = { LOG_LEVEL_INFO, describe_host },
        [BRIDGE_EVENT_RELISTENED] = { LOG_LEVEL_INFO, describe_host },
};

void bridge_log_event(const char *vm_name, const struct bridge_event *ev)
{
        enum log_level level;
        char text[LINE_MAX_TEXT];

        if (ev->kind < 0 || ev->kind >= _BRIDGE_EVENT_KIND_MAX || !bridge_event_lines[ev->kind].describe)
                return;
        level = bridge_event_lines[ev->kind].level;
        if (ev->kind == BRIDGE_EVENT_GUEST_DETACHED && ev->error < 0 && ev->error != -ECANCELED)
                level = LOG_LEVEL_WARN;
        bridge_event_lines[ev->kind].describe(ev, text, sizeof(text));
        log_msg(level, "bridge %s: %s", vm_name, text);
}
