/* daemon/bridge-log.h: the daemon's log lines for what a VM's bridge tells it (bridge/ logs nothing); owns nothing. */
#pragma once

#include "bridge/conn.h"

/* One line, "bridge VM: ...", at the level the event deserves. */
void bridge_log_event(const char *vm_name, const struct bridge_event *ev);
