/* libvsockmux/cleanup.h: _cleanup_ helpers for libvsockmux's types, for vsockmux's own programs
 * (the CLI, bench-ctl); not installed: the public header stays free of util/. */
#pragma once

#include "libvsockmux/vsockmux.h"
#include "util/macro.h"

DEFINE_CLEANUP(struct vsockmux_client *, vsockmux_client_free);
DEFINE_CLEANUP(ProtobufCMessage *, vsockmux_message_free);
