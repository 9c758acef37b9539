/* cli/since.h: parses `events --since SEQ|TIME`; owns nothing. */
#pragma once

#include <stdint.h>

/* SEQ is digits: the last sequence number seen (*ret_seq). TIME is RFC 3339 in UTC or with an
 * offset (2026-12-03T17:00:00Z, 2026-12-03T18:00:00.5+01:00), @UNIX_SECONDS, or a duration ago
 * (30s, 15m, 2h, 1d), given as *ret_ns (CLOCK_REALTIME ns; now_ns is "now"). The other out-param
 * is set to 0. Returns 0 or -EINVAL. */
int cli_since_parse(const char *s, uint64_t now_ns, uint64_t *ret_seq, uint64_t *ret_ns);
