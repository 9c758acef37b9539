/* daemon/relay-log.h: the daemon's log lines for what the relay tells it (relay/ logs nothing); owns nothing. */
#pragma once

#include "relay/relay.h"

/* One line, "relay: ...", at the level the event deserves. */
void relay_log_event(const struct relay_event *ev);
/* The warning for objects still open when the daemon frees the relay (none: no line). */
void relay_log_leftovers(const struct relay_stats *st);
